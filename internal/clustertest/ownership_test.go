//go:build linux

package clustertest

// The scale-out command path on a Redis Cluster: router processes sharing
// the command partitions through a lease group (cqrs.Ownership over
// lease.RedisStore), reading them with redispart, on a Redis Cluster of 3
// masters with 2 replicas each, with the master serving the most command
// topics SIGKILLed mid-run.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/internal/proc"
	"github.com/esmill/esmill/internal/rediscluster"
	"github.com/esmill/esmill/internal/scaleout"
	"github.com/esmill/esmill/internal/sierracluster"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/lease"
	"github.com/esmill/esmill/sierradb"
)

// workerEnv makes the test binary a router process: its value is the
// worker's configuration in JSON.
const workerEnv = "ESMILL_CLUSTERTEST_WORKER"

func workerMain(spec string) int {
	var cfg scaleout.WorkerConfig
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.Ready = func() { fmt.Println("worker ready") }
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := scaleout.RunWorker(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	fmt.Println("worker stopped")
	return 0
}

func startWorker(t *testing.T, cfg scaleout.WorkerConfig) *proc.Process {
	t.Helper()
	spec, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := proc.Start(t.TempDir(), os.Args[0], []string{"-test.run=^$"}, []string{workerEnv + "=" + string(spec)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill() })
	return p
}

// TestOwnershipOnRedisCluster runs two router processes in one lease
// group (cqrs.Ownership, lease.RedisStore) reading their partitions with
// redispart, on a Redis Cluster of 3 masters with 2 replicas each; a
// sender sends numbered commands to 100 entities, in order per entity,
// through redisbus's durable publisher, sending a command again (same
// command id) when its publish fails. The master serving the most command
// topics, which also serves the sender's reply topic, is SIGKILLed a third
// of the way through. Every command must be applied once, in order, and
// answered; the test prints the counts and the time the dead master's
// topics went without a reply.
//
// With the reply topic on the dead master, the routers' reply publishes
// fail until the replica is promoted: a router returns those commands to
// the transport (cqrs.ReplyNotSentError), which delivers them again, and
// answers them then. Before, such a command was acked unanswered, and the
// test waited for its reply until its context ran out.
func TestOwnershipOnRedisCluster(t *testing.T) {
	if !sierracluster.Enabled() {
		t.Skipf("cluster tests are off: set %s=1 (.ci/run does)", sierracluster.EnvClusterTests)
	}
	rc := rediscluster.Start(t, rediscluster.Config{ReplicasPerMaster: 2})
	sierraAddr := testservice.RequireSierraDB(t)
	ctx := testCtx(t, 4*time.Minute)
	const (
		partitions = 12
		entities   = 100
		perEntity  = 20
		sendFor    = 20 * time.Second
		// Bounds of the steps after the kill, each well above what it
		// takes (a promotion takes about 4 s, the last reply comes within
		// about 10 s of the last send).
		promotion   = time.Minute
		sendingEnds = sendFor + time.Minute
		lastReply   = 90 * time.Second
	)
	run := watermill.NewShortUUID()
	cfg := scaleout.WorkerConfig{
		RedisCluster: rc.Addrs(), SierraAddr: sierraAddr, Namespace: "own-" + run, Group: "own-workers",
		LeasePrefix: "own-" + run + ":", Partitions: partitions, TTL: 2 * time.Second,
	}

	// The victim: the master serving the most command topics; the
	// sender's reply topic is put on it too.
	topicOf := func(p int) string { return cfg.Namespace + "." + cqrs.DefaultTopic(scaleout.Counters.Category(), p) }
	perMaster := map[*rediscluster.Node][]int{}
	var victim *rediscluster.Node
	for p := range partitions {
		m, err := rc.MasterFor(ctx, topicOf(p))
		if err != nil {
			t.Fatal(err)
		}
		perMaster[m] = append(perMaster[m], p)
		if victim == nil || len(perMaster[m]) > len(perMaster[victim]) {
			victim = m
		}
	}
	replyTopic := ""
	for i := 0; replyTopic == "" && i < 100; i++ {
		topic := fmt.Sprintf("%s.replies.%d", cfg.Namespace, i)
		m, err := rc.MasterFor(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		if m == victim {
			replyTopic = topic
		}
	}
	if replyTopic == "" {
		t.Fatalf("no reply topic name of 100 hashes to the master %s", victim.Addr)
	}
	leaseMaster, err := rc.MasterFor(ctx, "{"+cfg.LeasePrefix+cfg.Group+"}:owners")
	if err != nil {
		t.Fatal(err)
	}

	var workers []*proc.Process
	for i := range 2 {
		c := cfg
		c.Instance = fmt.Sprintf("worker-%d", i+1)
		workers = append(workers, startWorker(t, c))
	}
	for _, w := range workers {
		if err := w.WaitReady(ctx, 60*time.Second, w.LogContains("worker ready")); err != nil {
			t.Fatal(err)
		}
	}
	workerLogs := func() {
		for _, w := range workers {
			t.Logf("a worker's log:\n%s", w.LogTail(3000))
		}
	}

	rdb, err := scaleout.Redis("", rc.Addrs(), 64)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	// The bus checks the routers' partition count in the lease group.
	group := &cqrs.Ownership{Store: lease.NewRedisStore(rdb, cfg.LeasePrefix), Group: cfg.Group}
	sender, err := scaleout.NewSenderWithReplies(rdb, cfg.Namespace, partitions, group, replyTopic)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()

	ids := make([]string, entities)
	partOf := map[string]int{}
	for i := range ids {
		ids[i] = fmt.Sprintf("e%s-%d", run, i)
		partOf[ids[i]] = cqrs.PartitionOf(scaleout.Counters.Category()+"-"+ids[i], partitions)
	}
	onVictim := func(id string) bool { return slices.Contains(perMaster[victim], partOf[id]) }

	// The sender: round k sends command k to every entity, rounds spread
	// over the sending time; a failed publish is sent again.
	sent := make(chan error, 1)
	resends := 0
	killAt := make(chan struct{})
	sctx, stopSending := context.WithTimeout(ctx, sendingEnds)
	var sending sync.WaitGroup
	defer func() { stopSending(); sending.Wait() }()
	sending.Go(func() {
		begin := time.Now()
		for seq := 1; seq <= perEntity; seq++ {
			if seq == perEntity/3 {
				close(killAt)
			}
			for _, id := range ids {
				for {
					err := sender.Send(sctx, id, seq)
					if err == nil {
						break
					}
					if sctx.Err() != nil {
						sent <- fmt.Errorf("the sender did not send %s #%d within %s (%d publishes sent again): %w", id, seq, sendingEnds, resends, err)
						return
					}
					resends++
					time.Sleep(100 * time.Millisecond)
				}
			}
			select {
			case <-time.After(time.Until(begin.Add(sendFor * time.Duration(seq) / perEntity))):
			case <-sctx.Done():
				sent <- fmt.Errorf("the sender stopped after round %d: %w", seq, sctx.Err())
				return
			}
		}
		sent <- nil
	})
	select {
	case <-killAt:
	case err := <-sent:
		t.Fatalf("the sender ended before the kill: %v", err)
	}
	killed := time.Now()
	kctx, cancelKill := context.WithTimeout(ctx, promotion)
	took, err := rc.KillMaster(kctx, victim)
	cancelKill()
	if err != nil {
		t.Fatalf("master %s SIGKILLed: no replica promoted within %s: %v", victim.Addr, promotion, err)
	}
	if err := <-sent; err != nil {
		workerLogs()
		t.Fatal(err)
	}
	sentAll := time.Now()
	total := entities * perEntity
	for sender.Replies() < total && time.Since(sentAll) < lastReply && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	waited := time.Since(sentAll).Round(time.Millisecond)
	for _, w := range workers {
		w.Stop(15 * time.Second)
	}
	// How many replies the routers could not publish (and answered when
	// the command came again).
	refused := 0
	for _, w := range workers {
		refused += strings.Count(w.Log(), "reply not sent")
	}

	client, err := sierradb.New(sierradb.Config{Addr: sierraAddr})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if n := sender.Replies(); n < total {
		// Which commands went unanswered, and whether they ran.
		var lines []string
		for _, id := range ids {
			applied := map[int]bool{}
			for ev, err := range client.ScanAll(ctx, scaleout.Counters.StreamID(id), 0) {
				if err != nil {
					t.Fatal(err)
				}
				if e, _, err := scaleout.Counters.DecodeEvent(ev); err == nil {
					if st, ok := e.(scaleout.Stepped); ok {
						applied[st.Seq] = true
					}
				}
			}
			for seq := 1; seq <= perEntity; seq++ {
				if _, ok := sender.Reply(scaleout.CommandID(id, seq)); !ok {
					lines = append(lines, fmt.Sprintf("%s #%d (command id %s, partition %d, on the dead master: %v, applied: %v)",
						id, seq, scaleout.CommandID(id, seq), partOf[id], onVictim(id), applied[seq]))
				}
			}
		}
		workerLogs()
		if len(lines) > 30 {
			lines = append(lines[:30], fmt.Sprintf("... and %d more", len(lines)-30))
		}
		t.Fatalf("%d of %d commands unanswered %s after the last send (%d reply publishes refused in the routers); unanswered:\n%s",
			total-n, total, waited, refused, strings.Join(lines, "\n"))
	}

	// The longest time without a reply after the kill, to commands on
	// the dead master's topics and to any command.
	times := sender.ReplyTimes()
	var all, victimTimes []time.Time
	for _, id := range ids {
		for seq := 1; seq <= perEntity; seq++ {
			at, ok := times[scaleout.CommandID(id, seq)]
			if !ok || at.Before(killed) {
				continue
			}
			all = append(all, at)
			if onVictim(id) {
				victimTimes = append(victimTimes, at)
			}
		}
	}
	longestGap := func(ts []time.Time) time.Duration {
		slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
		gap, prev := time.Duration(0), killed
		for _, at := range ts {
			gap, prev = max(gap, at.Sub(prev)), at
		}
		return gap.Round(time.Millisecond)
	}
	gap, victimGap := longestGap(all), longestGap(victimTimes)

	counts, err := scaleout.Verify(ctx, client, sender, ids, perEntity)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("master %s (%d of %d command topics, the reply topic, lease keys: %v) SIGKILLed: replica promoted after %s; "+
		"longest time without a reply after the kill: %s on the dead master's topics, %s on any; %d publishes sent again; "+
		"%d reply publishes refused (answered on redelivery); last reply %s after the last send",
		victim.Addr, len(perMaster[victim]), partitions, leaseMaster == victim, took.Round(time.Millisecond),
		victimGap, gap, resends, refused, waited)
	if len(victimTimes) == 0 {
		t.Error("no command on the dead master's topics was answered after the kill")
	}
	t.Logf("2 router processes sharing the partitions: %s", counts)
	if !counts.Clean() || counts.Applied != total {
		workerLogs()
		t.Fatalf("want every command applied once, in order, answered and none rejected")
	}
}
