package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/middleware"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/sierradb"
)

func TestMain(m *testing.M) { os.Exit(testservice.Main(m)) }

type Account struct{ Balance int64 }

type Deposited struct {
	Amount int64 `cbor:"amount"`
}

func (Deposited) EventName() string { return "MoneyDeposited" }

type Deposit struct{ Amount int64 }

func (Deposit) CommandName() string { return "Deposit" }

type Withdraw struct{ Amount int64 }

func (Withdraw) CommandName() string { return "Withdraw" }

var ErrNoFunds = errors.New("no funds")

var Accounts = aggregate.MustDefine[Account, string]("account",
	aggregate.On(func(a *Account, e Deposited) { a.Balance += e.Amount }),
	aggregate.Handle(func(a Account, c Deposit, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		return aggregate.Events(Deposited{Amount: c.Amount}), nil
	}),
	aggregate.Handle(func(a Account, c Withdraw, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		return nil, ErrNoFunds
	}),
)

func redisClient(t testing.TB) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testservice.RequireRedis(t)})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func msgCtx() *message.Message {
	m := message.NewMessage(watermill.NewUUID(), nil)
	m.SetContext(context.Background())
	return m
}

// recordingPublisher keeps what is published.
type recordingPublisher struct {
	mu   sync.Mutex
	msgs map[string][]*message.Message
}

func (p *recordingPublisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.msgs == nil {
		p.msgs = map[string][]*message.Message{}
	}
	p.msgs[topic] = append(p.msgs[topic], msgs...)
	return nil
}
func (p *recordingPublisher) Close() error { return nil }
func (p *recordingPublisher) get(topic string) []*message.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*message.Message(nil), p.msgs[topic]...)
}

// Every package's errors declare their class, and esmill.Classify reads
// it: the one classification the router, Retry and the runner share.
func TestClassifyAcrossPackages(t *testing.T) {
	tests := []struct {
		err  error
		want esmill.Class
	}{
		{&aggregate.RejectedError{Err: ErrNoFunds}, esmill.Final},
		{&aggregate.RejectedError{Err: esmill.MarkTransient(ErrNoFunds)}, esmill.Transient},
		{&aggregate.ExpectedVersionError{}, esmill.Final},
		{&aggregate.RateLimitError{}, esmill.Final},
		{&aggregate.PartitionKeyError{}, esmill.Final},
		{fmt.Errorf("x: %w", aggregate.ErrPartitionKeyMismatch), esmill.Final},
		{&cqrs.BadCommandError{Reason: "x"}, esmill.Poison},
		{&aggregate.UnknownCommandError{}, esmill.Poison},
		{&aggregate.CommandDecodeError{}, esmill.Poison},
		{&aggregate.EventDecodeError{Err: io.ErrUnexpectedEOF}, esmill.Poison},
		{&aggregate.InvalidIDError{}, esmill.Poison},
		{&aggregate.VersionGapError{}, esmill.Poison},
		{&aggregate.PanicError{}, esmill.Poison},
		{&readmodel.PanicError{}, esmill.Poison},
		{&aggregate.ConflictError{Last: sierradb.ErrWrongExpectedVersion}, esmill.Transient},
		{sierradb.ParseServerError("TIMEOUT write operation timed out"), esmill.Transient},
		{fmt.Errorf("send: %w", io.EOF), esmill.Transient},
		{fmt.Errorf("read: %w", context.DeadlineExceeded), esmill.Transient},
		{&middleware.RateLimitedError{}, esmill.Transient},
		{&aggregate.LockTimeoutError{}, esmill.Transient},
		{fmt.Errorf("%w (3 attempts)", aggregate.ErrTxContention), esmill.Transient},
		{&cqrs.RemoteError{Kind: cqrs.KindRejected}, esmill.Final},
		{&cqrs.RemoteError{Kind: cqrs.KindPanic}, esmill.Poison},
		{&cqrs.RemoteError{Kind: cqrs.KindInternal, Class: "poison"}, esmill.Poison},
		{&cqrs.RemoteError{Kind: cqrs.KindInternal}, esmill.Transient},
	}
	for _, tt := range tests {
		if got := esmill.Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%T %v) = %s, want %s", tt.err, tt.err, got, tt.want)
		}
	}
}

// must builds a middleware from a configuration the test knows is valid.
func must(m message.HandlerMiddleware, err error) message.HandlerMiddleware {
	if err != nil {
		panic(err)
	}
	return m
}

// A bad configuration is an error while wiring, never a panic.
func TestConfigsValidate(t *testing.T) {
	if _, err := middleware.NewRateLimit(middleware.RateLimitConfig{}); err == nil || !strings.Contains(err.Error(), "Limiter is required") {
		t.Errorf("rate limit without a limiter: %v", err)
	}
	_, err := middleware.NewRetry(middleware.RetryConfig{MaxRetries: -1, Jitter: 2, Multiplier: 0.5, PoisonTopic: "p"})
	for _, want := range []string{"MaxRetries", "Jitter", "Multiplier", "PoisonPublisher"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("retry: %v, want a word on %s", err, want)
		}
	}
	if _, err := middleware.NewDedup(middleware.DedupConfig{TTL: -time.Second}); err == nil {
		t.Error("negative TTL accepted")
	}
	for _, f := range []func() (message.HandlerMiddleware, error){
		func() (message.HandlerMiddleware, error) { return middleware.NewRetry(middleware.RetryConfig{}) },
		func() (message.HandlerMiddleware, error) { return middleware.NewDedup(middleware.DedupConfig{}) },
	} {
		if m, err := f(); err != nil || m == nil {
			t.Errorf("zero config: %v", err)
		}
	}
}

// A duplicate whose idempotent reply the publisher refuses is not acked:
// the middleware returns a transient *cqrs.ReplyNotSentError, so that the
// duplicate comes again and its caller is answered then.
func TestDedupReplyNotSent(t *testing.T) {
	down := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	down.Close()
	store := middleware.NewMemoryDedupStore()
	calls := 0
	handler := func(*message.Message) ([]*message.Message, error) { calls++; return nil, nil }
	msg := func() *message.Message {
		m := message.NewMessage("cmd-1", nil)
		m.Metadata.Set(esmill.MetaReplyTopic, "replies")
		m.SetContext(context.Background())
		return m
	}
	if _, err := must(middleware.NewDedup(middleware.DedupConfig{Store: store, ReplyPublisher: down}))(handler)(msg()); err != nil || calls != 1 {
		t.Fatalf("first delivery: %d calls, %v", calls, err)
	}
	_, err := must(middleware.NewDedup(middleware.DedupConfig{Store: store, ReplyPublisher: down}))(handler)(msg())
	if !errors.Is(err, cqrs.ErrReplyNotSent) || esmill.Classify(err) != esmill.Transient || calls != 1 {
		t.Fatalf("duplicate, reply refused: %d calls, %v (%s), want a transient cqrs.ErrReplyNotSent and no call", calls, err, esmill.Classify(err))
	}
	pub := &recordingPublisher{}
	if _, err := must(middleware.NewDedup(middleware.DedupConfig{Store: store, ReplyPublisher: pub}))(handler)(msg()); err != nil || calls != 1 {
		t.Fatalf("duplicate again: %d calls, %v", calls, err)
	}
	if got := pub.get("replies"); len(got) != 1 || got[0].Metadata.Get(esmill.MetaReplyTo) != "cmd-1" {
		t.Fatalf("the duplicate delivered again got %d replies, want 1", len(got))
	}
}

func TestRetry(t *testing.T) {
	fast := middleware.RetryConfig{MaxRetries: 3, InitialInterval: time.Millisecond, MaxInterval: 2 * time.Millisecond}
	t.Run("final errors are not retried", func(t *testing.T) {
		calls := 0
		h := must(middleware.NewRetry(fast))(func(*message.Message) ([]*message.Message, error) {
			calls++
			return nil, &aggregate.RejectedError{StreamID: "s", Command: "Withdraw", Err: ErrNoFunds}
		})
		if _, err := h(msgCtx()); !errors.Is(err, ErrNoFunds) || calls != 1 {
			t.Fatalf("%d calls, %v", calls, err)
		}
	})
	t.Run("transient errors are retried", func(t *testing.T) {
		calls := 0
		h := must(middleware.NewRetry(fast))(func(*message.Message) ([]*message.Message, error) {
			calls++
			if calls < 3 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, nil
		})
		if _, err := h(msgCtx()); err != nil || calls != 3 {
			t.Fatalf("%d calls, %v", calls, err)
		}
	})
	t.Run("parked with the reason", func(t *testing.T) {
		pub := &recordingPublisher{}
		r := fast
		r.PoisonPublisher, r.PoisonTopic = pub, "poison"
		calls := 0
		h := must(middleware.NewRetry(r))(func(*message.Message) ([]*message.Message, error) {
			calls++
			return nil, io.ErrUnexpectedEOF
		})
		m := msgCtx()
		if _, err := h(m); err != nil || calls != 4 {
			t.Fatalf("%d calls, %v", calls, err)
		}
		parked := pub.get("poison")
		if len(parked) != 1 || parked[0].UUID != m.UUID || parked[0].Metadata.Get(esmill.MetaPoisonClass) != "transient" ||
			parked[0].Metadata.Get(esmill.MetaPoisonReason) != io.ErrUnexpectedEOF.Error() || parked[0].Metadata.Get(esmill.MetaPoisonAttempts) != "4" {
			t.Fatalf("parked %+v", parked)
		}
		// Poison goes at once.
		calls = 0
		h = must(middleware.NewRetry(r))(func(*message.Message) ([]*message.Message, error) {
			calls++
			return nil, &cqrs.BadCommandError{Reason: "garbage"}
		})
		if _, err := h(msgCtx()); err != nil || calls != 1 || len(pub.get("poison")) != 2 {
			t.Fatalf("poison: %d calls, %v", calls, err)
		}
	})
}

func TestLocalRateLimit(t *testing.T) {
	lim := middleware.NewLocalLimiter(rate.Every(time.Hour), 3)
	var runs atomic.Int64
	h := must(middleware.NewRateLimit(middleware.RateLimitConfig{Limiter: lim, Key: func(*message.Message) string { return "k" }}))(
		func(*message.Message) ([]*message.Message, error) { runs.Add(1); return nil, nil })
	var limited int
	for range 10 {
		_, err := h(msgCtx())
		var rl *middleware.RateLimitedError
		if errors.As(err, &rl) && rl.RetryAfter > 0 && errors.Is(err, middleware.ErrRateLimited) {
			limited++
		}
	}
	if runs.Load() != 3 || limited != 7 {
		t.Fatalf("%d runs, %d limited", runs.Load(), limited)
	}
	// Wait mode waits for the token.
	lim2 := middleware.NewLocalLimiter(rate.Every(50*time.Millisecond), 1)
	hw := must(middleware.NewRateLimit(middleware.RateLimitConfig{Limiter: lim2, Key: func(*message.Message) string { return "k" }, Wait: true}))(
		func(*message.Message) ([]*message.Message, error) { return nil, nil })
	start := time.Now()
	for range 5 {
		if _, err := hw(msgCtx()); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 190*time.Millisecond {
		t.Fatalf("5 messages at 20/s took %s", d)
	}
}

// Two processes share one Redis limit: together they get no more tokens
// than one would.
func TestSharedRateLimit(t *testing.T) {
	rdb := redisClient(t)
	prefix := "rl-" + watermill.NewShortUUID() + ":"
	var allowed atomic.Int64
	var procs []message.HandlerFunc
	for range 2 {
		// Each "process" has its own limiter object and connection.
		own := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr})
		t.Cleanup(func() { own.Close() })
		procs = append(procs, must(middleware.NewRateLimit(middleware.RateLimitConfig{
			Limiter: middleware.NewRedisLimiter(own, prefix, redis_rate.Limit{Rate: 20, Burst: 20, Period: time.Second}),
			Key:     middleware.MetadataKey("tenant"),
		}))(func(*message.Message) ([]*message.Message, error) { allowed.Add(1); return nil, nil }))
	}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := msgCtx()
			m.Metadata.Set("tenant", "acme")
			procs[i%2](m)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	// 20 of burst plus 20/s for the time it took.
	max := int64(20 + 20*elapsed.Seconds() + 1)
	if n := allowed.Load(); n < 20 || n > max {
		t.Fatalf("two processes let %d of 200 through in %s, want 20..%d", n, elapsed, max)
	}
}

// rig is one router "process": its own SierraDB client, executor (with its
// own cache), Redis connection and Watermill router over Redis Streams,
// with the three middleware. Two rigs share only what two processes
// would: SierraDB and Redis.
type rig struct {
	exec    *aggregate.Executor
	runs    atomic.Int64
	dups    atomic.Int64
	handled atomic.Int64
	stop    func() // closes the router; idempotent
}

func startProcess(t *testing.T, sierraAddr string, _ *redis.Client, topic func(string, int) string, group, poisonTopic string, dedupPrefix string) *rig {
	t.Helper()
	rdb := redisClient(t) // this rig's own connection, closed by its subscriber too
	client, err := sierradb.New(sierradb.Config{Addr: sierraAddr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	exec, err := aggregate.NewExecutor(client, aggregate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Close() })
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: rdb, ConsumerGroup: group, BlockTime: 10 * time.Millisecond, OldestId: "0"}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	r := &rig{exec: exec}
	cr, err := cqrs.NewCommandRouter(cqrs.RouterConfig{Executor: exec, Types: []aggregate.AnyType{Accounts}, Partitions: 2, Topic: topic, ReplyPublisher: pub, FailBadCommands: true})
	if err != nil {
		t.Fatal(err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	router.AddMiddleware(
		must(middleware.NewRetry(middleware.RetryConfig{InitialInterval: time.Millisecond, PoisonPublisher: pub, PoisonTopic: poisonTopic})),
		must(middleware.NewDedup(middleware.DedupConfig{Store: middleware.NewRedisDedupStore(rdb, dedupPrefix), ReplyPublisher: pub, OnDuplicate: func(*message.Message) { r.dups.Add(1) }})),
		func(h message.HandlerFunc) message.HandlerFunc {
			return func(m *message.Message) ([]*message.Message, error) {
				r.runs.Add(1)
				out, err := h(m)
				if err == nil {
					r.handled.Add(1)
				}
				return out, err
			}
		},
	)
	cr.AddHandlers(router, sub)
	done := make(chan struct{})
	go func() {
		defer close(done)
		router.Run(context.Background())
	}()
	r.stop = func() {
		router.Close()
		<-done
	}
	t.Cleanup(r.stop)
	<-router.Running()
	return r
}

// waitCount waits until count reaches want, failing t with what it saw at
// the deadline.
func waitCount(t *testing.T, what string, want int64, count func() int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for count() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d after 30 s, want %d", what, count(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Two routers that share a Redis dedup store never run one message twice,
// whichever of them receives each copy. The phases make the split certain
// instead of leaving it to Redis: router a alone takes the first delivery
// and ten copies; a stops and b, which never saw the message, takes ten
// more (its store lookups can only see a's writes through Redis); then b
// and a third router c take twenty copies at once. The stream is read back
// through a fresh executor, whose cache saw nothing, so the count of
// stored events comes from SierraDB.
func TestDedupAcrossTwoRouterProcesses(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		rdb := redisClient(t)
		id := watermill.NewShortUUID()
		topic := func(c string, p int) string { return id + "." + cqrs.DefaultTopic(c, p) }
		start := func() *rig {
			return startProcess(t, addr, rdb, topic, "routers-"+id, "poison-"+id, "dedup-"+id+":")
		}
		a := start()
		busRdb := redisClient(t)
		pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: busRdb}, watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: busRdb, ConsumerGroup: "bus-" + id, BlockTime: 10 * time.Millisecond}, watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sub.Close() })
		bus, err := cqrs.NewCommandBus(cqrs.BusConfig{Publisher: pub, Partitions: 2, Topic: topic, ReplySubscriber: sub})
		if err != nil {
			t.Fatal(err)
		}
		defer bus.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		msgID := watermill.NewUUID()
		alice := "alice-" + id
		execute := func(what string, wantIdempotent bool) {
			t.Helper()
			rep, err := bus.Execute(ctx, Accounts, alice, Deposit{Amount: 10}, cqrs.WithMessageUUID(msgID))
			if err != nil || rep.Idempotent != wantIdempotent {
				t.Fatalf("%s: %+v %v", what, rep, err)
			}
		}
		execute("first delivery, to a", false)
		for i := range 10 {
			execute(fmt.Sprintf("copy %d, to a", i), true)
		}
		a.stop()
		b := start()
		for i := range 10 {
			execute(fmt.Sprintf("copy %d, to b", i), true)
		}
		c := start()
		// Twenty copies at once, to b and c; errors come back on a channel.
		errs := make(chan error, 20)
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- bus.Send(ctx, Accounts, alice, Deposit{Amount: 10}, cqrs.WithMessageUUID(msgID))
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		waitCount(t, "copies seen by b and c", 30, func() int64 { return b.dups.Load() + c.dups.Load() })
		if a.handled.Load() != 1 || a.dups.Load() != 10 || b.handled.Load() != 0 || c.handled.Load() != 0 {
			t.Fatalf("a handled %d and saw %d copies (want 1 and 10); b and c handled %d and %d (want 0)",
				a.handled.Load(), a.dups.Load(), b.handled.Load(), c.handled.Load())
		}
		t.Logf("41 deliveries: a handled 1 and refused %d copies, b refused %d, c refused %d",
			a.dups.Load(), b.dups.Load(), c.dups.Load())
		fresh, err := aggregate.NewExecutor(newSierraClient(t, addr), aggregate.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer fresh.Close()
		s, v, err := aggregate.Bind(fresh, Accounts).Load(ctx, alice)
		if err != nil || v != 0 || s.Balance != 10 {
			t.Fatalf("alice has %d at version %d (%v): a duplicate was written", s.Balance, v, err)
		}
	})
}

func newSierraClient(t *testing.T, addr string) *sierradb.Client {
	t.Helper()
	c, err := sierradb.New(sierradb.Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestPoisonParkedWhileOthersGoOn(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		rdb := redisClient(t)
		id := watermill.NewShortUUID()
		topic := func(c string, p int) string { return id + "." + cqrs.DefaultTopic(c, p) }
		proc := startProcess(t, addr, rdb, topic, "routers-"+id, "poison-"+id, "dedup-"+id+":")
		pub, _ := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, watermill.NopLogger{})
		ctx := context.Background()
		alice := "alice-" + id
		// Garbage for alice's partition, then good commands.
		bad, _ := cqrs.NewCommandMessage(Accounts, alice, Deposit{Amount: 1})
		bad.Payload = []byte{0xff}
		if err := pub.Publish(topic("account", cqrs.PartitionOf("account-"+alice, 2)), bad); err != nil {
			t.Fatal(err)
		}
		bus, _ := cqrs.NewCommandBus(cqrs.BusConfig{Publisher: pub, Partitions: 2, Topic: topic})
		defer bus.Close()
		for range 5 {
			if err := bus.Send(ctx, Accounts, alice, Deposit{Amount: 2}); err != nil {
				t.Fatal(err)
			}
		}
		poison, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: redisClient(t), ConsumerGroup: "ops-" + id, OldestId: "0", BlockTime: 10 * time.Millisecond}, watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { poison.Close() })
		parked, err := poison.Subscribe(ctx, "poison-"+id)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-parked:
			if m.UUID != bad.UUID || m.Metadata.Get(esmill.MetaPoisonClass) != "poison" || m.Metadata.Get(esmill.MetaPoisonReason) == "" ||
				m.Metadata.Get(esmill.MetaPoisonTopic) == "" {
				t.Fatalf("parked %s %v", m.UUID, m.Metadata)
			}
			m.Ack()
		case <-time.After(20 * time.Second):
			t.Fatal("nothing parked")
		}
		waitCount(t, "commands after the poison one", 5, proc.handled.Load)
		s, _, err := aggregate.Bind(proc.exec, Accounts).Load(ctx, alice)
		if err != nil || s.Balance != 10 {
			t.Fatalf("the commands after the poison one: balance %d, %v", s.Balance, err)
		}
	})
}
