package aggregate_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
)

// An order, for the stale-cache cases: Confirm is rejected unless the
// order was placed.
type Order struct{ Placed, Confirmed bool }

type OrderPlaced struct {
	Item string `cbor:"item"`
}

func (OrderPlaced) EventName() string { return "OrderPlaced" }

type OrderConfirmed struct{}

func (OrderConfirmed) EventName() string { return "OrderConfirmed" }

type PlaceOrder struct{ Item string }

func (PlaceOrder) CommandName() string { return "PlaceOrder" }

type ConfirmOrder struct{}

func (ConfirmOrder) CommandName() string { return "ConfirmOrder" }

var ErrNotPlaced = errors.New("order not placed")

var Orders = aggregate.MustDefine[Order, string]("order",
	aggregate.On(func(o *Order, _ OrderPlaced) { o.Placed = true }),
	aggregate.On(func(o *Order, _ OrderConfirmed) { o.Confirmed = true }),
	aggregate.Handle(func(o Order, c PlaceOrder, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		return aggregate.Events(OrderPlaced{Item: c.Item}), nil
	}),
	aggregate.Handle(func(o Order, _ ConfirmOrder, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		if !o.Placed {
			return nil, ErrNotPlaced
		}
		return aggregate.Events(OrderConfirmed{}), nil
	}),
)

// scanCounter counts the scans of entity streams.
type scanCounter struct {
	*sierradb.Client
	scans atomic.Int64
}

func (s *scanCounter) Scan(ctx context.Context, stream string, from, to uint64, opts ...sierradb.ScanOption) (sierradb.ScanPage, error) {
	s.scans.Add(1)
	return s.Client.Scan(ctx, stream, from, to, opts...)
}

// Executor A has the order cached as not placed; executor B (another
// process) places it; confirming on A must succeed, not be rejected from
// A's stale state. Before, only an append conflict refreshed the cache,
// and a rejection wrote nothing, so it stayed wrong for good.
func TestStaleCacheTwoExecutors(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		ctx := ctxT(t)
		storeA := &scanCounter{Client: newClient(t, addr)}
		a := aggregate.Bind(newExec(t, storeA, aggregate.Config{}), Orders)
		b := aggregate.Bind(newExec(t, newClient(t, addr), aggregate.Config{}), Orders)
		id := newID("o")

		// A caches the order: not placed, so Confirm is rightly rejected.
		if _, err := a.Execute(ctx, id, ConfirmOrder{}); !errors.Is(err, ErrNotPlaced) {
			t.Fatalf("confirm before the order: %v", err)
		}
		if _, err := b.Execute(ctx, id, PlaceOrder{Item: "book"}); err != nil {
			t.Fatal(err)
		}
		// SierraDB makes an append readable asynchronously (§5.7 of
		// docs/sierradb-protocol.md); the check reads what is readable,
		// so wait until B's event is.
		waitVersion(t, storeA.Client, "order-"+id, 0)
		res, err := a.Execute(ctx, id, ConfirmOrder{})
		if err != nil || len(res.Events) != 1 || res.Version != 1 {
			t.Fatalf("confirm on A after B placed the order: %+v, %v", res, err)
		}

		// Under a fence that has held since A last read the entity, A
		// answers from its cache without reading: the fence says nobody
		// else writes. Under a new hold (another token), it reads first.
		held := true
		fence := aggregate.Fence{Scope: "orders/7", Token: 1, Valid: func() bool { return held }}
		id2 := newID("o")
		if _, err := a.Execute(ctx, id2, ConfirmOrder{}, aggregate.UnderFence(fence)); !errors.Is(err, ErrNotPlaced) {
			t.Fatalf("confirm before the order: %v", err)
		}
		before := storeA.scans.Load()
		if _, err := a.Execute(ctx, id2, ConfirmOrder{}, aggregate.UnderFence(fence)); !errors.Is(err, ErrNotPlaced) {
			t.Fatalf("confirm under the same fence: %v", err)
		}
		if n := storeA.scans.Load() - before; n != 0 {
			t.Fatalf("a rejection under an unbroken fence read the stream %d times", n)
		}
		if _, err := b.Execute(ctx, id2, PlaceOrder{Item: "pen"}); err != nil {
			t.Fatal(err)
		}
		waitVersion(t, storeA.Client, "order-"+id2, 0)
		next := aggregate.Fence{Scope: "orders/7", Token: 2, Valid: func() bool { return held }}
		if res, err := a.Execute(ctx, id2, ConfirmOrder{}, aggregate.UnderFence(next)); err != nil || res.Version != 1 {
			t.Fatalf("confirm under a new hold after B placed the order: %+v, %v", res, err)
		}
		// A fence that no longer holds writes nothing.
		held = false
		id3 := newID("o")
		_, err = a.Execute(ctx, id3, PlaceOrder{Item: "cup"}, aggregate.UnderFence(next))
		var fl *aggregate.FenceLostError
		if !errors.As(err, &fl) || !errors.Is(err, aggregate.ErrFenceLost) || esmill.Classify(err) != esmill.Transient {
			t.Fatalf("append under a lost fence: %v", err)
		}
		if v, err := storeA.StreamVersion(ctx, "order-"+id3); err != nil || v != -1 {
			t.Fatalf("a lost fence wrote: version %d, %v", v, err)
		}
	})
}

// A command that named an expected version, applied, then delivered again
// (its reply was lost) is idempotent: before, the expected version was
// checked first and the redelivery was answered as a version mismatch.
func TestExpectVersionRedelivery(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		ctx := ctxT(t)
		accounts := aggregate.Bind(newExec(t, newClient(t, addr), aggregate.Config{}), accountType())
		id := newID("ev")
		if _, err := accounts.Execute(ctx, id, Open{Owner: "x"}); err != nil {
			t.Fatal(err)
		}
		cmdID := uuid.NewString()
		opts := []aggregate.ExecOption{aggregate.WithCommandID(cmdID), aggregate.WithExpectedVersion(sierradb.ExpectVersion(0))}
		if r, err := accounts.Execute(ctx, id, Deposit{Amount: 5}, opts...); err != nil || r.Version != 1 {
			t.Fatalf("first delivery: %+v, %v", r, err)
		}
		r, err := accounts.Execute(ctx, id, Deposit{Amount: 5}, opts...)
		if err != nil || !r.Idempotent || r.Version != 1 {
			t.Fatalf("redelivery of an applied command with ExpectVersion(0): %+v, %v", r, err)
		}
		// A new command with a stale expectation still fails.
		_, err = accounts.Execute(ctx, id, Deposit{Amount: 5}, aggregate.WithExpectedVersion(sierradb.ExpectVersion(0)))
		if !errors.Is(err, sierradb.ErrWrongExpectedVersion) {
			t.Fatalf("a new command expecting version 0 at version 1: %v", err)
		}
	})
}

// A command delivered again after 1,000 later commands of its entity is
// recognised, in the executor that ran it and in a fresh one that rebuilds
// the entity from its stream. Before, an entity remembered its last 256
// ids only. Past the retention (by time), it is not.
func TestRedeliveryAfterManyCommands(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		ctx := ctxT(t)
		c := newClient(t, addr)
		accounts := aggregate.Bind(newExec(t, c, aggregate.Config{}), accountType())
		id := newID("many")
		first := uuid.NewString()
		if _, err := accounts.Execute(ctx, id, Deposit{Amount: 1}, aggregate.WithCommandID(first)); err != nil {
			t.Fatal(err)
		}
		later := 1000
		if tg.Real {
			later = 300 // ~30 ms per append on the real server
		}
		for range later {
			// Slow deposits, which have no rate limit.
			if _, err := accounts.Execute(ctx, id, Slow{Amount: 1}); err != nil {
				t.Fatal(err)
			}
		}
		r, err := accounts.Execute(ctx, id, Deposit{Amount: 1}, aggregate.WithCommandID(first))
		if err != nil || !r.Idempotent {
			t.Fatalf("redelivery after %d later commands: %+v, %v", later, r, err)
		}
		waitVersion(t, c, "bank_account-"+id, int64(later))
		fresh := aggregate.Bind(newExec(t, c, aggregate.Config{}), accountType())
		r, err = fresh.Execute(ctx, id, Deposit{Amount: 1}, aggregate.WithCommandID(first))
		if err != nil || !r.Idempotent {
			t.Fatalf("redelivery to a fresh executor after %d later commands: %+v, %v", later, r, err)
		}
		// An executor whose clock is past the retention has forgotten it.
		future := func() time.Time { return time.Now().Add(time.Hour) }
		late := aggregate.Bind(newExec(t, c, aggregate.Config{CommandIDRetention: time.Minute, Now: future}), accountType())
		r, err = late.Execute(ctx, id, Deposit{Amount: 1}, aggregate.WithCommandID(first))
		if err != nil || r.Idempotent {
			t.Fatalf("redelivery past the retention: %+v, %v", r, err)
		}
	})
}

// silentServer accepts connections, reads what comes and never answers,
// until it is closed: a SierraDB that hangs in the middle of an append.
type silentServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newSilentServer(t *testing.T) *silentServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return s
}

func (s *silentServer) Close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// appendsElsewhere reads from one client and appends through another.
type appendsElsewhere struct {
	*sierradb.Client
	appends *sierradb.Client
}

func (s appendsElsewhere) AppendMulti(ctx context.Context, key uuid.UUID, evs []sierradb.NewEvent) (sierradb.MultiAppendResult, error) {
	return s.appends.AppendMulti(ctx, key, evs)
}

// A cancelled call returns at once with an "outcome unknown" error,
// although go-redis, which honours deadlines only, would wait for its
// read timeout (here 20s); the entity reloads before its next command.
func TestCancellationInterruptsAppend(t *testing.T) {
	srv := newSilentServer(t)
	reads := newClient(t, testservice.SierraTargets()[0].Addr(t))
	hung, err := sierradb.New(sierradb.Config{Addr: srv.ln.Addr().String(), ReadTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	x := newExec(t, appendsElsewhere{Client: reads, appends: hung}, aggregate.Config{})
	// Cleanups run last first: the server lets go of the hung append,
	// then the executor (which waits for it) closes.
	t.Cleanup(func() { srv.Close(); hung.Close() })
	accounts := aggregate.Bind(x, accountType())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := accounts.Execute(ctx, newID("hang"), Deposit{Amount: 1}, aggregate.WithCommandID("cmd-1"))
		done <- err
	}()
	// Cancel once the call waits for the hung server.
	for srv.connCount() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	cancelled := time.Now()
	cancel()
	select {
	case err := <-done:
		latency := time.Since(cancelled)
		t.Logf("Execute returned %s after the cancellation (%s in all): %v", latency, time.Since(start), err)
		var ou *aggregate.OutcomeUnknownError
		if !errors.As(err, &ou) || !errors.Is(err, aggregate.ErrOutcomeUnknown) || !errors.Is(err, context.Canceled) || ou.CommandID != "cmd-1" {
			t.Fatalf("want an outcome-unknown error naming the command id, got %v", err)
		}
		if esmill.Classify(err) != esmill.Transient {
			t.Fatalf("class %s", esmill.Classify(err))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Execute did not return within 10s of the cancellation (the read timeout is 20s)")
	}
}

func (s *silentServer) connCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
