//go:build linux

package clustertest

// The command path on a Redis Cluster of 3 masters with 2 replicas each:
// the bus, the command router and the replies over watermill-redisstream,
// with the Redis dedup store, the Redis rate limiter and the Redis lease
// store on the same cluster, through redisbus's cluster client and durable
// publisher. A master is SIGKILLed mid-run.

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/internal/rediscluster"
	"github.com/esmill/esmill/internal/sierracluster"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/lease"
	"github.com/esmill/esmill/middleware"
	"github.com/esmill/esmill/redisbus"
	"github.com/esmill/esmill/sierradb"
)

// Stepper is the command path test's entity: each Step carries its
// sequence number, so that the stream shows order, loss and duplicates.
type Stepper struct{ Steps []int }

type Stepped struct {
	Seq int `cbor:"seq"`
}

func (Stepped) EventName() string { return "Stepped" }

type Step struct{ Seq int }

func (Step) CommandName() string { return "Step" }

var steppers = aggregate.MustDefine[Stepper, string]("stepper",
	aggregate.On(func(s *Stepper, e Stepped) { s.Steps = append(s.Steps, e.Seq) }),
	aggregate.Handle(func(s Stepper, c Step, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		return aggregate.Events(Stepped{Seq: c.Seq}), nil
	}),
)

// commandPath is a router and a bus on a Redis Cluster.
type commandPath struct {
	rdb        *redis.ClusterClient
	bus        *cqrs.CommandBus
	client     *sierradb.Client
	topic      func(string, int) string
	duplicates atomic.Int64
}

const commandPartitions = 6

func newCommandPath(t *testing.T, rc *rediscluster.Cluster, sierraAddr, prefix string) *commandPath {
	t.Helper()
	rdb := redisbus.NewClusterClient(&redis.ClusterOptions{
		Addrs:                    rc.Addrs(),
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { rdb.Close() })
	inner, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := redisbus.NewDurablePublisher(inner, redisbus.DurableConfig{Client: rdb})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	newSub := func(group string) message.Subscriber {
		sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
			Client: rdb, ConsumerGroup: group, OldestId: "0", BlockTime: 100 * time.Millisecond,
			// A message delivered but not acknowledged when its master
			// died is delivered again after MaxIdleTime.
			ClaimInterval: 500 * time.Millisecond, MaxIdleTime: 3 * time.Second,
			// Close must not wait for a read that blocks forever.
			DisableIndefiniteInitialBlock: true,
		}, watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sub.Close() })
		return sub
	}
	client, err := sierradb.New(sierradb.Config{Addr: sierraAddr, PoolSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	exec, err := aggregate.NewExecutor(client, aggregate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Close() })
	cp := &commandPath{rdb: rdb, client: client}
	cp.topic = func(category string, p int) string { return prefix + "." + cqrs.DefaultTopic(category, p) }
	cr, err := cqrs.NewCommandRouter(cqrs.RouterConfig{Executor: exec, Types: []aggregate.AnyType{steppers},
		Partitions: commandPartitions, Topic: cp.topic, ReplyPublisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	dedup, err := middleware.NewDedup(middleware.DedupConfig{
		Store: middleware.NewRedisDedupStore(rdb, prefix+":dedup:"), ReplyPublisher: pub,
		OnDuplicate: func(*message.Message) { cp.duplicates.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	limit, err := middleware.NewRateLimit(middleware.RateLimitConfig{
		Limiter: middleware.NewRedisLimiter(rdb, prefix+":rate:", redis_rate.PerSecond(1000)), Wait: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	router.AddMiddleware(dedup, limit)
	cr.AddHandlers(router, newSub(prefix+"-routers"))
	go router.Run(context.Background())
	t.Cleanup(func() { router.Close() })
	<-router.Running()
	bus, err := cqrs.NewCommandBus(cqrs.BusConfig{Publisher: pub, Partitions: commandPartitions, Topic: cp.topic,
		ReplySubscriber: newSub(prefix + "-replies"), ReplyTopic: prefix + ".replies", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	cp.bus = bus
	return cp
}

// senders run commands through the bus: each owns entities and sends them
// Steps one after another, waiting for the reply; a command without a
// reply is sent again with the same message UUID (its command id).
type senders struct {
	cp       *commandPath
	mu       sync.Mutex
	acked    map[string]int // entity -> steps acknowledged (0..n-1)
	retries  int
	okTimes  []time.Time
	failures map[string]int
	wg       sync.WaitGroup
	stop     chan struct{}
}

func startSenders(t *testing.T, cp *commandPath, prefix string, n, perSender int) *senders {
	s := &senders{cp: cp, acked: map[string]int{}, failures: map[string]int{}, stop: make(chan struct{})}
	for i := range n {
		s.wg.Go(func() { s.run(prefix, i, perSender) })
	}
	t.Cleanup(s.halt)
	return s
}

func (s *senders) halt() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
}

func (s *senders) run(prefix string, i, entities int) {
	ents := cqrs.For(s.cp.bus, steppers)
	for k := 0; ; k++ {
		id := fmt.Sprintf("%s-s%d-e%d", prefix, i, k%entities)
		seq := k / entities
		uuid := fmt.Sprintf("%s-%d", id, seq)
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 12*time.Second)
			rep, err := ents.Execute(ctx, id, Step{Seq: seq}, cqrs.WithMessageUUID(uuid))
			cancel()
			if err == nil && rep.Error != nil {
				err = rep.Error
			}
			s.mu.Lock()
			if err == nil {
				s.acked[id] = seq + 1
				s.okTimes = append(s.okTimes, time.Now())
			} else {
				s.retries++
				s.failures[errKind(err)]++
			}
			s.mu.Unlock()
			if err == nil {
				break
			}
			select {
			case <-s.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

func errKind(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "no reply in time"):
		return "no reply in time"
	case strings.Contains(msg, "publish to"):
		return "publish failed"
	}
	if len(msg) > 60 {
		msg = msg[:60]
	}
	return msg
}

func (s *senders) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.okTimes)
}

func (s *senders) waitFor(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for s.count() < n {
		if time.Now().After(deadline) {
			s.mu.Lock()
			f := fmt.Sprint(s.failures)
			s.mu.Unlock()
			t.Fatalf("only %d commands acknowledged within %s (failures %s)", s.count(), timeout, f)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *senders) gap(from time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, longest := from, time.Duration(0)
	for _, at := range s.okTimes {
		if at.After(from) {
			longest = max(longest, at.Sub(prev))
			prev = at
		}
	}
	return longest
}

// TestCommandPathOnRedisCluster runs 8 senders × 3 entities through the
// bus and the router on a Redis Cluster, SIGKILLs the master holding the
// most command topics mid-run, and counts per entity what its stream
// holds against what was acknowledged: commands lost, applied twice, out
// of order. It then sends acknowledged commands again (dedup), and checks
// the rate limiter and the lease store on the failed-over cluster.
func TestCommandPathOnRedisCluster(t *testing.T) {
	if !sierracluster.Enabled() {
		t.Skipf("cluster tests are off: set %s=1 (.ci/run does)", sierracluster.EnvClusterTests)
	}
	rc := rediscluster.Start(t, rediscluster.Config{ReplicasPerMaster: 2})
	ctx := testCtx(t, 3*time.Minute)
	prefix := fmt.Sprintf("cp%d", time.Now().UnixNano()%1e9)
	cp := newCommandPath(t, rc, testservice.RequireSierraDB(t), prefix)

	// The master serving the most command topics.
	perMaster := map[*rediscluster.Node]int{}
	var victim *rediscluster.Node
	for p := range commandPartitions {
		m, err := rc.MasterFor(ctx, cp.topic(steppers.Category(), p))
		if err != nil {
			t.Fatal(err)
		}
		perMaster[m]++
		if victim == nil || perMaster[m] > perMaster[victim] {
			victim = m
		}
	}
	checkStores(t, ctx, cp.rdb, prefix, "before the failover")

	s := startSenders(t, cp, prefix, 8, 3)
	s.waitFor(t, 200, time.Minute)
	killedAt := time.Now()
	took, err := rc.KillMaster(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	before := s.count()
	s.waitFor(t, before+200, time.Minute)
	s.halt()
	gap := s.gap(killedAt)
	s.mu.Lock()
	acked := maps.Clone(s.acked)
	t.Logf("master %s (%d of %d command topics) SIGKILLed: replica promoted after %s; longest time without a reply after the kill: %s; "+
		"%d commands acknowledged, %d attempts sent again (%v)",
		victim.Addr, perMaster[victim], commandPartitions, took.Round(time.Millisecond), gap.Round(time.Millisecond),
		len(s.okTimes), s.retries, s.failures)
	s.mu.Unlock()

	lost, twice, disorder := 0, 0, 0
	for id, n := range acked {
		var seqs []int
		for ev, err := range cp.client.ScanAll(ctx, steppers.StreamID(id), 0) {
			if err != nil {
				t.Fatal(err)
			}
			e, _, err := steppers.DecodeEvent(ev)
			if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, e.(Stepped).Seq)
		}
		seen := map[int]int{}
		for i, q := range seqs {
			seen[q]++
			if i > 0 && q < seqs[i-1] {
				disorder++
			}
		}
		for q := range n {
			if seen[q] == 0 {
				lost++
			}
		}
		for _, k := range seen {
			twice += k - 1
		}
	}
	t.Logf("commands: %d lost, %d applied twice, %d out of order", lost, twice, disorder)
	if lost != 0 || twice != 0 || disorder != 0 {
		t.Errorf("commands: %d lost, %d applied twice, %d out of order", lost, twice, disorder)
	}

	// Dedup: acknowledged commands sent again are answered as
	// idempotent and write nothing.
	ents := cqrs.For(cp.bus, steppers)
	resent := 0
	for id, n := range acked {
		if resent == 10 {
			break
		}
		rep, err := ents.Execute(ctx, id, Step{Seq: n - 1}, cqrs.WithMessageUUID(fmt.Sprintf("%s-%d", id, n-1)))
		if err != nil || !rep.Idempotent {
			t.Errorf("command %s-%d sent again: %+v %v", id, n-1, rep, err)
		}
		resent++
	}
	t.Logf("dedup: %d acknowledged commands sent again, all idempotent; the Redis dedup store caught %d duplicates", resent, cp.duplicates.Load())
	if cp.duplicates.Load() == 0 {
		t.Error("the Redis dedup store caught no duplicate")
	}
	checkStores(t, ctx, cp.rdb, prefix, "after the failover")
}

// checkStores checks the Redis rate limiter and the lease store on the
// cluster, with keys on every master.
func checkStores(t *testing.T, ctx context.Context, rdb *redis.ClusterClient, prefix, when string) {
	t.Helper()
	lim := middleware.NewRedisLimiter(rdb, prefix+":"+when+":", redis_rate.Limit{Rate: 3, Burst: 3, Period: time.Hour})
	slots := map[int]bool{}
	for k := 0; len(slots) < 3 && k < 100; k++ {
		key := fmt.Sprintf("k%d", k)
		slot := rediscluster.Slot(prefix + ":" + when + ":" + key)
		if slots[slot*3/16384] {
			continue
		}
		slots[slot*3/16384] = true
		for i := range 4 {
			wait, err := lim.Allow(ctx, key)
			if err != nil {
				t.Fatalf("%s: rate limiter: %v", when, err)
			}
			if (i < 3) != (wait == 0) {
				t.Errorf("%s: rate limiter key %s, take %d: wait %s", when, key, i+1, wait)
			}
		}
	}
	st := lease.NewRedisStore(rdb, prefix+":lease:")
	group := fmt.Sprintf("g-%d", len(when))
	if _, err := st.Heartbeat(ctx, lease.HeartbeatRequest{Group: group, Instance: "a", Partitions: 4, TTL: time.Minute}); err != nil {
		t.Fatalf("%s: lease heartbeat: %v", when, err)
	}
	grants, err := st.Acquire(ctx, lease.AcquireRequest{Group: group, Instance: "a", Partitions: []int{0, 1, 2, 3}, TTL: time.Minute})
	if err != nil || len(grants) != 4 {
		t.Fatalf("%s: lease acquire: %v %v", when, grants, err)
	}
	other, err := st.Acquire(ctx, lease.AcquireRequest{Group: group, Instance: "b", Partitions: []int{0, 1, 2, 3}, TTL: time.Minute})
	if err != nil || len(other) != 0 {
		t.Errorf("%s: a second instance got leases held by the first: %v %v", when, other, err)
	}
	if err := st.Release(ctx, group, "a", []int{0, 1, 2, 3}); err != nil {
		t.Fatalf("%s: lease release: %v", when, err)
	}
	t.Logf("%s: the rate limiter (keys on %d masters' slot ranges) and the lease store work on the cluster", when, len(slots))
}
