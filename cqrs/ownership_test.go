package cqrs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/lease"
	"github.com/esmill/esmill/middleware"
	"github.com/esmill/esmill/redispart"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

// worker is one router instance of a group, as a process would run it:
// its own executor, subscriber and Watermill router.
type worker struct {
	instance string
	router   *message.Router
	commands *cqrs.CommandRouter
	exec     *aggregate.Executor
	done     chan struct{}
	handled  atomic.Int64
}

type groupRig struct {
	t          *testing.T
	sierra     string
	rdb        *redis.Client
	pub        message.Publisher
	store      lease.Store
	group      string
	ns         string
	partitions int
	extra      func(r *message.Router, pub message.Publisher)
	logger     *slog.Logger
	seq        int
}

func newGroupRig(t *testing.T, partitions int) *groupRig {
	addr := testservice.RequireRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 128})
	t.Cleanup(func() { rdb.Close() })
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	run := watermill.NewShortUUID()
	return &groupRig{
		t: t, sierra: embedded.RunT(t).Addr(), rdb: rdb, pub: pub,
		store: lease.NewRedisStore(rdb, "test-"+run+":"), group: "workers", ns: "ns" + run, partitions: partitions,
		logger: slog.New(slog.DiscardHandler),
	}
}

func (g *groupRig) start(partitions int) *worker {
	t := g.t
	g.seq++
	instance := fmt.Sprintf("worker-%d", g.seq) // names whose shares of 8 partitions are never empty
	client, err := sierradb.New(sierradb.Config{Addr: g.sierra, PoolSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	exec, err := aggregate.NewExecutor(client, aggregate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := redispart.NewSubscriber(redispart.SubscriberConfig{Client: g.rdb, Group: g.group, BlockTime: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	commands, err := cqrs.NewCommandRouter(cqrs.RouterConfig{
		Executor: exec, Types: []aggregate.AnyType{Accounts}, Partitions: partitions, Namespace: g.ns,
		ReplyPublisher: g.pub, Logger: g.logger, FailBadCommands: g.extra != nil,
		Ownership: &cqrs.Ownership{Store: g.store, Group: g.group, Instance: instance, TTL: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{instance: instance, router: router, commands: commands, exec: exec, done: make(chan struct{})}
	router.AddMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if err == nil {
				w.handled.Add(1)
			}
			return out, err
		}
	})
	if g.extra != nil {
		g.extra(router, g.pub)
	}
	commands.AddHandlers(router, sub)
	go func() {
		defer close(w.done)
		router.Run(context.Background())
		exec.Close()
		client.Close()
	}()
	<-router.Running()
	t.Cleanup(func() { w.stop() })
	return w
}

func (w *worker) stop() {
	w.router.Close()
	<-w.done
}

func (g *groupRig) bus(partitions int) *cqrs.CommandBus {
	t := g.t
	replies, err := redispart.NewSubscriber(redispart.SubscriberConfig{Client: g.rdb, Group: "sender", BlockTime: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { replies.Close() })
	bus, err := cqrs.NewCommandBus(cqrs.BusConfig{
		Publisher: g.pub, ReplySubscriber: replies, Partitions: partitions, Namespace: g.ns,
		Group: &cqrs.Ownership{Store: g.store, Group: g.group},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	return bus
}

// waitOwned waits until the workers hold the partitions that rendezvous
// hashing gives each of them: the group is stable.
func waitOwned(t *testing.T, partitions int, ws ...*worker) {
	t.Helper()
	var names []string
	for _, w := range ws {
		names = append(names, w.instance)
	}
	slices.Sort(names)
	deadline := time.Now().Add(20 * time.Second)
	for {
		stable := true
		got := map[string][]int{}
		for _, w := range ws {
			var held []int
			for _, l := range w.commands.Leases() {
				held = append(held, l.Partition)
			}
			got[w.instance] = held
			stable = stable && slices.Equal(held, lease.Assign(names, w.instance, partitions))
		}
		if stable {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions held: %v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Three routers share a group: each partition is consumed by one of them.
// Commands sent in order to many entities, while routers leave and join,
// are applied in order, each once.
func TestOwnershipKeepsOrderAcrossRebalances(t *testing.T) {
	const partitions = 8
	g := newGroupRig(t, partitions)
	a, b, c := g.start(partitions), g.start(partitions), g.start(partitions)
	waitOwned(t, partitions, a, b, c)
	for _, w := range []*worker{a, b, c} {
		if n := len(w.commands.Leases()); n == 0 || n == partitions {
			t.Fatalf("%s holds %d of %d partitions", w.instance, n, partitions)
		}
	}
	bus := g.bus(partitions)
	accounts := cqrs.For(bus, Accounts)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const entities, perEntity = 40, 25
	ids := make([]string, entities)
	for e := range ids {
		ids[e] = newID("own")
	}
	sendRound := func(from, to int) {
		for i := from; i < to; i++ {
			for _, id := range ids {
				if err := accounts.Send(ctx, id, Deposit{Amount: int64(i + 1)}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	sendRound(0, 10)
	b.stop() // a graceful leave: its partitions move at once
	sendRound(10, 18)
	d := g.start(partitions) // a join
	sendRound(18, perEntity)
	waitOwned(t, partitions, a, c, d)
	exec := aggregate.Bind(a.exec, Accounts)
	deadline := time.Now().Add(30 * time.Second)
	for _, id := range ids {
		for {
			st, v, err := exec.Load(ctx, id)
			if err == nil && v == perEntity-1 {
				for i, amt := range st.Log {
					if amt != int64(i+1) {
						t.Fatalf("%s applied %v: out of order or twice", id, st.Log)
					}
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s at version %d (%v), want %d", id, v, err, perEntity-1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("handled: a %d, b %d, c %d, d %d", a.handled.Load(), b.handled.Load(), c.handled.Load(), d.handled.Load())
}

// A bus and routers whose partition counts differ fail loudly: the bus
// at its first send, naming both counts; a router refuses a message
// stamped with another count; a second router with another count cannot
// join the group.
func TestPartitionCountMismatch(t *testing.T) {
	g := newGroupRig(t, 8)
	w := g.start(8)
	waitOwned(t, 8, w)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	bus := g.bus(4)
	err := cqrs.For(bus, Accounts).Send(ctx, "x", Deposit{Amount: 1})
	var pm *cqrs.PartitionMismatchError
	if !errors.As(err, &pm) || !errors.Is(err, cqrs.ErrPartitionMismatch) || pm.Sender != 4 || pm.Router != 8 ||
		!strings.Contains(err.Error(), "4 partitions") || !strings.Contains(err.Error(), "run with 8") {
		t.Fatalf("a bus of 4 partitions sending to routers of 8: %v", err)
	}

	// A sender that does not check (no Group) stamps its count; the
	// router answers with both.
	replies, err := redispart.NewSubscriber(redispart.SubscriberConfig{Client: g.rdb, Group: "unchecked", BlockTime: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer replies.Close()
	unchecked, err := cqrs.NewCommandBus(cqrs.BusConfig{Publisher: g.pub, ReplySubscriber: replies, Partitions: 4, Namespace: g.ns})
	if err != nil {
		t.Fatal(err)
	}
	defer unchecked.Close()
	// An entity whose partition is the same among 4 and 8, so that the
	// message reaches a topic the router reads.
	id := ""
	for i := 0; id == ""; i++ {
		if c := fmt.Sprint("m", i); cqrs.PartitionOf("account-"+c, 4) == cqrs.PartitionOf("account-"+c, 8) {
			id = c
		}
	}
	_, err = cqrs.For(unchecked, Accounts).Execute(ctx, id, Deposit{Amount: 1})
	if !errors.Is(err, cqrs.ErrBadCommand) || !strings.Contains(err.Error(), "sent for 4 partitions") || !strings.Contains(err.Error(), "runs with 8") {
		t.Fatalf("a message stamped with 4 partitions at a router of 8: %v", err)
	}

	// A router of 4 partitions in the group of 8 stops with the counts.
	bad := g.start(4)
	deadline := time.Now().Add(20 * time.Second)
	for bad.commands.Err() == nil {
		if time.Now().After(deadline) {
			t.Fatal("a router of 4 partitions joined a group of 8")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var pc *lease.PartitionCountError
	if err := bad.commands.Err(); !errors.As(err, &pc) || pc.Have != 8 || pc.Want != 4 {
		t.Fatalf("router of 4 in a group of 8: %v", err)
	}
	select {
	case <-bad.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the misconfigured router keeps running")
	}
}

// Two environments on one Redis, with namespaces, never consume each
// other's commands.
func TestNamespacesSeparateEnvironments(t *testing.T) {
	blue := newGroupRig(t, 4)
	green := *blue
	green.t, green.ns, green.group = t, blue.ns+"-green", "green-workers"
	green.store = lease.NewRedisStore(blue.rdb, "test-"+watermill.NewShortUUID()+":")
	wb, wg := blue.start(4), green.start(4)
	waitOwned(t, 4, wb)
	waitOwned(t, 4, wg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 5 {
		if _, err := cqrs.For(blue.bus(4), Accounts).Execute(ctx, newID("blue"), Deposit{Amount: 1}); err != nil {
			t.Fatal(err)
		}
	}
	// The router replies before its handler returns and the counting
	// middleware counts: wait for the count.
	for wb.handled.Load() < 5 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	if wb.handled.Load() != 5 || wg.handled.Load() != 0 {
		t.Fatalf("blue handled %d, green %d; want 5 and 0", wb.handled.Load(), wg.handled.Load())
	}
}

// A router handles only the commands of the entities that belong to the
// topic it read them from.
func TestMisroutedCommandIsRefused(t *testing.T) {
	g := newGroupRig(t, 4)
	w := g.start(4)
	waitOwned(t, 4, w)
	bus := g.bus(4)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := newID("mis")
	msg, err := cqrs.NewCommandMessage(Accounts, id, Deposit{Amount: 1})
	if err != nil {
		t.Fatal(err)
	}
	msg.Metadata.Set(esmill.MetaReplyTopic, bus.ReplyTopic())
	wrong := (cqrs.PartitionOf("account-"+id, 4) + 1) % 4
	if err := g.pub.Publish(g.ns+"."+cqrs.DefaultTopic("account", wrong), msg); err != nil {
		t.Fatal(err)
	}
	// The reply goes to the bus's waiter only through Execute; read the
	// entity instead: nothing was written, and the next command runs.
	if _, err := cqrs.For(bus, Accounts).Execute(ctx, id, Deposit{Amount: 2}); err != nil {
		t.Fatal(err)
	}
	for w.handled.Load() < 2 { // the misrouted message is acked too
		if ctx.Err() != nil {
			t.Fatal("the misrouted message was not handled")
		}
		time.Sleep(5 * time.Millisecond)
	}
	st, v, err := aggregate.Bind(w.exec, Accounts).Load(ctx, id)
	if err != nil || v != 0 || st.Balance != 2 {
		t.Fatalf("after a misrouted command: balance %d at %d, %v", st.Balance, v, err)
	}
}

// Execute retried after a timeout runs the command once: the bus retries
// a call whose outcome is unknown under its command id. Before, each call
// sent a new command, and three retries wrote three events.
func TestExecuteRetryAfterTimeout(t *testing.T) {
	g := newGroupRig(t, 4)
	bus := g.bus(4)
	accounts := cqrs.For(bus, Accounts)
	id := newID("retry")
	var ids []string
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, err := accounts.Execute(ctx, id, Deposit{Amount: 10})
		cancel()
		var te *cqrs.TimeoutError
		if !errors.As(err, &te) || !errors.Is(err, cqrs.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || te.CommandID == "" {
			t.Fatalf("no router runs: %v", err)
		}
		ids = append(ids, te.CommandID)
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("the retries used the command ids %v", ids)
	}
	// The routers come up and run what was sent: three messages of one
	// command.
	w := g.start(4)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The fourth try waits under the same id: its reply is that of the
	// command, which ran once (at version 0), whichever copy answers.
	rep, err := accounts.Execute(ctx, id, Deposit{Amount: 10})
	if err != nil || rep.Version != 0 {
		t.Fatalf("the fourth try: %+v, %v", rep, err)
	}
	st, v, err := aggregate.Bind(w.exec, Accounts).Load(ctx, id)
	if err != nil || v != 0 || st.Balance != 10 {
		t.Fatalf("after 4 tries of one deposit: balance %d at version %d, %v", st.Balance, v, err)
	}
	// A new command is new: the same deposit again, after a reply.
	if rep, err := accounts.Execute(ctx, id, Deposit{Amount: 10}); err != nil || rep.Idempotent || rep.Version != 1 {
		t.Fatalf("a second deposit: %+v, %v", rep, err)
	}
	// And AsNewCommand sends a new one even after a timeout.
	w.stop()
	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if _, err := accounts.Execute(short, id, Deposit{Amount: 10}); !errors.Is(err, cqrs.ErrTimeout) {
		t.Fatal(err)
	}
	w2 := g.start(4)
	if rep, err := accounts.Execute(ctx, id, Deposit{Amount: 10}, cqrs.AsNewCommand()); err != nil || rep.Idempotent {
		t.Fatalf("AsNewCommand after a timeout: %+v, %v", rep, err)
	}
	_ = w2
}

// A panic in a handler is logged with its stack, answered to the caller,
// and, with FailBadCommands and the Retry middleware, parked on the
// poison topic.
func TestRouterPanicReachesThePoisonQueue(t *testing.T) {
	g := newGroupRig(t, 2)
	var logs testservice.SyncBuffer
	g.logger = slog.New(slog.NewTextHandler(&logs, nil))
	poisonTopic := g.ns + ".poison"
	g.extra = func(r *message.Router, pub message.Publisher) {
		retry, err := middleware.NewRetry(middleware.RetryConfig{PoisonPublisher: pub, PoisonTopic: poisonTopic, Logger: g.logger})
		if err != nil {
			t.Fatal(err)
		}
		r.AddMiddleware(retry)
	}
	w := g.start(2)
	waitOwned(t, 2, w)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	poison, err := redispart.NewSubscriber(redispart.SubscriberConfig{Client: g.rdb, Group: "poison-reader", BlockTime: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer poison.Close()
	parked, err := poison.Subscribe(ctx, poisonTopic)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cqrs.For(g.bus(2), Accounts).Execute(ctx, newID("boom"), Explode{})
	if !errors.Is(err, aggregate.ErrPanic) || esmill.Classify(err) != esmill.Poison {
		t.Fatalf("the caller got %v", err)
	}
	select {
	case m := <-parked:
		if m.Metadata.Get(esmill.MetaPoisonClass) != "poison" || !strings.Contains(m.Metadata.Get(esmill.MetaPoisonReason), "exploded") {
			t.Fatalf("parked with %v", m.Metadata)
		}
		m.Ack()
	case <-ctx.Done():
		t.Fatal("the panicking command was not parked")
	}
	if out := logs.String(); !strings.Contains(out, "panic while handling a command") || !strings.Contains(out, "goroutine") {
		t.Fatalf("no panic with a stack in the log:\n%s", out)
	}
}

// slowRenewals delays the return of Acquire calls (after the store has
// granted them): the next calls by the durations queued with slow.
type slowRenewals struct {
	lease.Store
	mu     sync.Mutex
	delays []time.Duration
}

func (s *slowRenewals) slow(d ...time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delays = append(s.delays, d...)
}

func (s *slowRenewals) Acquire(ctx context.Context, req lease.AcquireRequest) ([]lease.Grant, error) {
	gs, err := s.Store.Acquire(ctx, req)
	s.mu.Lock()
	var d time.Duration
	if len(s.delays) > 0 {
		d, s.delays = s.delays[0], s.delays[1:]
	}
	s.mu.Unlock()
	time.Sleep(d)
	return gs, err
}

// A renewal that is slow, not lost, leaves the partition with its
// router. With TTL 1 s a member renews every 200 ms and stops work 800 ms
// after a renewal started. A renewal that takes 350 ms, followed by one
// that takes 450 ms, lets the first one's deadline pass while the second
// is on its way (a busy machine, a slow Redis); the second lands under
// the same token with a new deadline, before which the third renews. A
// command that arrives in between is held back, and goes on once the
// renewal has landed. Before, the forwarder waited for a revocation that
// never came, and the partition stalled for good with its router holding
// it (the scale-out chaos test lost a partition's commands that way on a
// busy machine).
func TestSlowRenewalKeepsThePartitionGoing(t *testing.T) {
	g := newGroupRig(t, 1)
	var logs testservice.SyncBuffer
	g.logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	slow := &slowRenewals{Store: g.store}
	store := g.store
	g.store = slow
	w := g.start(1)
	g.store = store
	waitOwned(t, 1, w)
	token := w.commands.Leases()[0].Token
	accounts := cqrs.For(g.bus(1), Accounts)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := newID("slow")
	sent := 0
	const stalled = "lease ran out before its renewal"
	// Commands one after another while the renewals are slow, until a
	// command met the passed deadline; each must be answered.
	for attempt := 1; !strings.Contains(logs.String(), stalled); attempt++ {
		if attempt > 5 {
			t.Fatalf("in 5 tries no command met a lease past its local deadline; log:\n%s", logs.String())
		}
		slow.slow(350*time.Millisecond, 450*time.Millisecond)
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
			callCtx, cancelCall := context.WithTimeout(ctx, 10*time.Second)
			_, err := accounts.Execute(callCtx, id, Deposit{Amount: 1})
			cancelCall()
			if err != nil {
				t.Fatalf("deposit %d (try %d): %v; log:\n%s", sent+1, attempt, err, logs.String())
			}
			sent++
		}
	}
	if got := w.commands.Leases(); len(got) != 1 || got[0].Token != token {
		t.Fatalf("the partition was not kept under its token %d: %+v; log:\n%s", token, got, logs.String())
	}
	st, v, err := aggregate.Bind(w.exec, Accounts).Load(ctx, id)
	if err != nil || st.Balance != int64(sent) || v != int64(sent-1) {
		t.Fatalf("after %d deposits: balance %d at version %d, %v", sent, st.Balance, v, err)
	}
}
