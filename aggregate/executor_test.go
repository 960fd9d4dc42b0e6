package aggregate_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
)

func newClient(t testing.TB, addr string) *sierradb.Client {
	t.Helper()
	c, err := sierradb.New(sierradb.Config{Addr: addr, PoolSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newExec(t testing.TB, c aggregate.Store, cfg aggregate.Config) *aggregate.Executor {
	t.Helper()
	x, err := aggregate.NewExecutor(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

var ids atomic.Int64

func newID(prefix string) string {
	return fmt.Sprintf("%s%d%d", prefix, time.Now().UnixNano()%1e9, ids.Add(1))
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestExecuteAndReload(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		ctx := ctxT(t)
		c := newClient(t, addr)
		accounts := aggregate.Bind(newExec(t, c, aggregate.Config{}), accountType())
		id := newID("alice")
		res, err := accounts.Execute(ctx, id, Open{Owner: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		if res.Version != 0 || len(res.Events) != 1 || res.StreamID != "bank_account-"+id {
			t.Fatalf("result %+v", res)
		}
		if res.PartitionKey != sierradb.StreamPartitionKey("bank_account-"+id) {
			t.Fatal("not the default partition key")
		}
		for _, amt := range []uint32{100, 50} {
			if _, err := accounts.Execute(ctx, id, Deposit{Amount: amt}); err != nil {
				t.Fatal(err)
			}
		}
		res, err = accounts.Execute(ctx, id, Withdraw{Amount: 30})
		if err != nil {
			t.Fatal(err)
		}
		a := res.Events[0]
		if a.Version != 3 || a.Event.(Withdrawn).Amount != 30 || !sierradb.EventIDMatchesPartitionKey(a.ID, res.PartitionKey) {
			t.Fatalf("appended %+v", a)
		}
		// A business error writes nothing and changes nothing.
		_, err = accounts.Execute(ctx, id, Withdraw{Amount: 1000})
		var rej *aggregate.RejectedError
		if !errors.Is(err, ErrInsufficientFunds) || !errors.Is(err, aggregate.ErrRejected) || !errors.As(err, &rej) || rej.Command != "Withdraw" {
			t.Fatalf("overdraft: %v", err)
		}
		s, v, err := accounts.Load(ctx, id)
		if err != nil || v != 3 || s.Balance != 120 || s.Owner != "alice" {
			t.Fatalf("Load = %+v, %d, %v", s, v, err)
		}
		// A second executor rebuilds the same state from the stream.
		other := aggregate.Bind(newExec(t, newClient(t, addr), aggregate.Config{}), accountType())
		waitVersion(t, c, "bank_account-"+id, 3)
		s2, v2, err := other.Load(ctx, id)
		if err != nil || v2 != 3 || s2.Balance != 120 || fmt.Sprint(s2.Log) != "[100 50 -30]" {
			t.Fatalf("rebuilt %+v, %d, %v", s2, v2, err)
		}
	})
}

// waitVersion waits until SierraDB serves version v of a stream (the real
// server confirms appends asynchronously).
func waitVersion(t *testing.T, c *sierradb.Client, stream string, v int64, opts ...sierradb.StreamVersionOption) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := c.StreamVersion(context.Background(), stream, opts...)
		if err == nil && got >= v {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s stuck at version %d (%v), want %d", stream, got, err, v)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPerEntityOrderAndParallelism(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		ctx := ctxT(t)
		c := newClient(t, addr)
		exec := newExec(t, c, aggregate.Config{})
		accounts := aggregate.Bind(exec, accountType())
		const entities, perEntity = 8, 12
		inHandler.Store(0)
		maxInHandler.Store(0)
		var wg sync.WaitGroup
		errs := make(chan error, entities*perEntity)
		idsList := make([]string, entities)
		for e := range entities {
			idsList[e] = newID("ord")
			// Several goroutines per entity submit in a known order: a
			// ticket makes submission order observable.
			var ticket sync.Mutex
			next := 0
			for w := range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < perEntity; i += 3 {
						// Wait for our turn to submit, then submit
						// while holding the turn until Execute has
						// queued us: the FIFO lock keeps that order.
						for {
							ticket.Lock()
							if next == i {
								break
							}
							ticket.Unlock()
							time.Sleep(time.Millisecond)
						}
						done := make(chan error, 1)
						stream := accounts.Type().StreamID(idsList[e])
						before := aggregate.Arrivals(exec, stream)
						go func() {
							_, err := accounts.Execute(ctx, idsList[e], Slow{Amount: uint32(i + 1), Delay: 2 * time.Millisecond})
							done <- err
						}()
						// Let it queue: wait until it reached the
						// entity's lock (or failed before).
						for aggregate.Arrivals(exec, stream) == before && len(done) == 0 {
							runtime.Gosched()
						}
						next++
						ticket.Unlock()
						if err := <-done; err != nil {
							errs <- err
						}
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for _, id := range idsList {
			s, v, err := accounts.Load(ctx, id)
			if err != nil || v != perEntity-1 {
				t.Fatalf("%s: version %d, %v", id, v, err)
			}
			for i, amt := range s.Log {
				if amt != int64(i+1) {
					t.Fatalf("%s applied %v: commands out of order", id, s.Log)
				}
			}
		}
		if maxInHandler.Load() < 2 {
			t.Fatalf("at most %d handlers ran at once: entities did not run in parallel", maxInHandler.Load())
		}
	})
}

func TestNoHandlerOverlapPerEntity(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		ctx := ctxT(t)
		accounts := aggregate.Bind(newExec(t, newClient(t, addr), aggregate.Config{}), accountType())
		id := newID("one")
		inHandler.Store(0)
		maxInHandler.Store(0)
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := accounts.Execute(ctx, id, Slow{Amount: uint32(i), Delay: time.Millisecond}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if maxInHandler.Load() != 1 {
			t.Fatalf("%d handlers of one entity ran at once", maxInHandler.Load())
		}
		if _, v, err := accounts.Load(ctx, id); err != nil || v != 19 {
			t.Fatalf("version %d after 20 commands (%v)", v, err)
		}
	})
}

func TestTwoExecutorsLoseNoUpdate(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		ctx := ctxT(t)
		a := aggregate.Bind(newExec(t, newClient(t, addr), aggregate.Config{MaxConflictRetries: 100}), accountType())
		b := aggregate.Bind(newExec(t, newClient(t, addr), aggregate.Config{MaxConflictRetries: 100}), accountType())
		id := newID("shared")
		const each = 40
		var wg sync.WaitGroup
		for _, x := range []*aggregate.Entities[Account, string]{a, b} {
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range each / 2 {
						if _, err := x.Execute(ctx, id, Deposit{Amount: 1}); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
		}
		wg.Wait()
		c := newClient(t, addr)
		waitVersion(t, c, "bank_account-"+id, 2*each-1)
		fresh := aggregate.Bind(newExec(t, c, aggregate.Config{}), accountType())
		s, v, err := fresh.Load(ctx, id)
		if err != nil || v != 2*each-1 || s.Balance != 2*each {
			t.Fatalf("after %d deposits from two executors: balance %d, version %d, %v", 2*each, s.Balance, v, err)
		}
	})
}

func TestRedeliveredCommandWritesOnce(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		ctx := ctxT(t)
		c := newClient(t, addr)
		x1 := aggregate.Bind(newExec(t, c, aggregate.Config{}), accountType())
		x2 := aggregate.Bind(newExec(t, newClient(t, addr), aggregate.Config{}), accountType())
		id := newID("redeliver")
		msgID := uuid.NewString()
		r1, err := x1.Execute(ctx, id, Deposit{Amount: 10}, aggregate.WithCommandID(msgID))
		if err != nil || r1.Idempotent || len(r1.Events) != 1 {
			t.Fatalf("first delivery: %+v, %v", r1, err)
		}
		r2, err := x1.Execute(ctx, id, Deposit{Amount: 10}, aggregate.WithCommandID(msgID))
		if err != nil || !r2.Idempotent || len(r2.Events) != 0 {
			t.Fatalf("redelivery to the same executor: %+v, %v", r2, err)
		}
		// Another process sees the id in the stream.
		waitVersion(t, c, "bank_account-"+id, 0)
		r3, err := x2.Execute(ctx, id, Deposit{Amount: 10}, aggregate.WithCommandID(msgID))
		if err != nil || !r3.Idempotent {
			t.Fatalf("redelivery to another executor: %+v, %v", r3, err)
		}
		s, v, err := x2.Load(ctx, id)
		if err != nil || v != 0 || s.Balance != 10 {
			t.Fatalf("balance %d at version %d (%v): written twice", s.Balance, v, err)
		}
	})
}

func TestCausationIdempotency(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		ctx := ctxT(t)
		c := newClient(t, addr)
		accounts := aggregate.Bind(newExec(t, c, aggregate.Config{}), accountType())
		id := newID("caused")
		cause := func(v uint64) aggregate.ExecOption {
			return aggregate.CausedBy(codec.Causation{EventID: uuid.New(), StreamID: "transfer-t1", StreamVersion: v})
		}
		run := func(cmd aggregate.Command, opt aggregate.ExecOption) aggregate.Result {
			t.Helper()
			r, err := accounts.Execute(ctx, id, cmd, opt)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		if r := run(Deposit{Amount: 5}, cause(3)); r.Idempotent {
			t.Fatal("first caused command idempotent")
		}
		if r := run(Deposit{Amount: 5}, cause(3)); !r.Idempotent {
			t.Fatal("same cause, same command ran twice")
		}
		if r := run(Withdraw{Amount: 1}, cause(3)); r.Idempotent {
			t.Fatal("same cause, another command was skipped")
		}
		if r := run(Deposit{Amount: 5}, cause(2)); !r.Idempotent {
			t.Fatal("an older cause from the same stream ran")
		}
		if r := run(Deposit{Amount: 5}, cause(4)); r.Idempotent {
			t.Fatal("a newer cause was skipped")
		}
		// The tracking lives in the stream: a fresh executor agrees.
		waitVersion(t, c, "bank_account-"+id, 2)
		fresh := aggregate.Bind(newExec(t, c, aggregate.Config{}), accountType())
		r, err := fresh.Execute(ctx, id, Deposit{Amount: 5}, cause(4))
		if err != nil || !r.Idempotent {
			t.Fatalf("fresh executor re-ran a handled cause: %+v, %v", r, err)
		}
	})
}

func TestPanicIsContained(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		ctx := ctxT(t)
		accounts := aggregate.Bind(newExec(t, newClient(t, addr), aggregate.Config{}), accountType())
		id := newID("panic")
		if _, err := accounts.Execute(ctx, id, Deposit{Amount: 7}); err != nil {
			t.Fatal(err)
		}
		_, err := accounts.Execute(ctx, id, Boom{})
		var pe *aggregate.PanicError
		if !errors.As(err, &pe) || !errors.Is(err, aggregate.ErrPanic) || len(pe.Stack) == 0 ||
			!strings.HasPrefix(err.Error(), "aggregate: the handler of command Boom panicked on "+accountType().StreamID(id)+": ") {
			t.Fatalf("panic: %v", err)
		}
		// Decide, with no stream, says the same without one.
		if _, err := accountType().Decide(nil, Boom{}); err == nil || !strings.HasPrefix(err.Error(), "aggregate: the handler of command Boom panicked: ") {
			t.Fatalf("panic in Decide: %v", err)
		}
		// The same entity and others still work.
		if _, err := accounts.Execute(ctx, id, Deposit{Amount: 1}); err != nil {
			t.Fatal(err)
		}
		if s, v, err := accounts.Load(ctx, id); err != nil || v != 1 || s.Balance != 8 {
			t.Fatalf("after a panic: %+v %d %v", s, v, err)
		}
	})
}

func TestStateIdempotencyDryRunAndExpectedVersion(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		ctx := ctxT(t)
		accounts := aggregate.Bind(newExec(t, newClient(t, addr), aggregate.Config{}), accountType())
		id := newID("misc")
		if r, err := accounts.Execute(ctx, id, Close{}); err != nil || r.Idempotent {
			t.Fatalf("close: %+v %v", r, err)
		}
		if r, err := accounts.Execute(ctx, id, Close{}); err != nil || !r.Idempotent || r.Version != 0 {
			t.Fatalf("second close: %+v %v", r, err)
		}
		r, err := accounts.Execute(ctx, id, Deposit{Amount: 3}, aggregate.DryRun())
		if err != nil || !r.DryRun || len(r.Events) != 1 || r.Events[0].Version != 1 {
			t.Fatalf("dry run: %+v %v", r, err)
		}
		if _, v, err := accounts.Load(ctx, id); err != nil || v != 0 {
			t.Fatalf("dry run wrote: version %d (%v)", v, err)
		}
		_, err = accounts.Execute(ctx, id, Deposit{Amount: 3}, aggregate.WithExpectedVersion(sierradb.ExpectEmpty))
		var ev *aggregate.ExpectedVersionError
		if !errors.As(err, &ev) || !errors.Is(err, sierradb.ErrWrongExpectedVersion) || ev.Current != 0 {
			t.Fatalf("expected empty: %v", err)
		}
		if _, err := accounts.Execute(ctx, id, Deposit{Amount: 3}, aggregate.WithExpectedVersion(sierradb.ExpectVersion(0))); err != nil {
			t.Fatal(err)
		}
	})
}

func TestUserErrors(t *testing.T) {
	x := newExec(t, newClient(t, "127.0.0.1:1"), aggregate.Config{})
	accounts := aggregate.Bind(x, accountType())
	ctx := ctxT(t)
	type Unknown struct{ aggregate.Command }
	_, err := accounts.Execute(ctx, "a", Unknown{Command: Deposit{}})
	if !errors.Is(err, aggregate.ErrUnknownCommand) {
		t.Fatalf("unknown command: %v", err)
	}
	_, err = accounts.Execute(ctx, strings.Repeat("x", 60), Deposit{Amount: 1})
	if !errors.Is(err, aggregate.ErrInvalidID) || !errors.Is(err, sierradb.ErrInvalidArgument) {
		t.Fatalf("oversize id: %v", err)
	}
	x.Close()
	x.Close()
	if _, err := accounts.Execute(ctx, "a", Deposit{Amount: 1}); !errors.Is(err, aggregate.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestDefineErrors(t *testing.T) {
	_, err := aggregate.Define[Account, string]("bad-category",
		aggregate.On(func(a *Account, e Deposited) {}),
		aggregate.On(func(a *Account, e Deposited) {}),
		aggregate.Handle(func(a Account, c Deposit, ctx *aggregate.CommandContext) ([]aggregate.Event, error) { return nil, nil }),
		aggregate.Handle(func(a Account, c Deposit, ctx *aggregate.CommandContext) ([]aggregate.Event, error) { return nil, nil }),
	)
	for _, want := range []string{"category", "MoneyDeposited", "Deposit"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Define error %v should mention %s", err, want)
		}
	}
	type weird struct{ a, b int }
	if _, err := aggregate.Define[Account, weird]("ok"); err == nil {
		t.Fatal("an id type without a string form was accepted")
	}
	n, err := aggregate.Define[Account, uint64]("num")
	if err != nil {
		t.Fatal(err)
	}
	if id, err := n.ParseStreamID(n.StreamID(42)); err != nil || id != 42 || n.StreamID(42) != "num-42" {
		t.Fatalf("uint64 ids: %v %v", id, err)
	}
	u := aggregate.MustDefine[Account, uuid.UUID]("u")
	key := uuid.New()
	if id, err := u.ParseStreamID(u.StreamID(key)); err != nil || id != key {
		t.Fatalf("uuid ids: %v %v", id, err)
	}
}
