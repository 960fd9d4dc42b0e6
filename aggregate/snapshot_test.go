package aggregate_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

// countingStore counts the events read by scans of entity streams.
type countingStore struct {
	*sierradb.Client
	scanned atomic.Int64
}

func (s *countingStore) Scan(ctx context.Context, stream string, from, to uint64, opts ...sierradb.ScanOption) (sierradb.ScanPage, error) {
	p, err := s.Client.Scan(ctx, stream, from, to, opts...)
	if !strings.Contains(stream, ":snapshot-") {
		s.scanned.Add(int64(len(p.Events)))
	}
	return p, err
}

func TestSnapshots(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		ctx := ctxT(t)
		c := newClient(t, addr)
		typ := accountType(aggregate.WithSnapshots[Account](50, 1))
		accounts := aggregate.Bind(newExec(t, c, aggregate.Config{}), typ)
		id := newID("snap")
		for range 120 {
			if _, err := accounts.Execute(ctx, id, Deposit{Amount: 1}); err != nil {
				t.Fatal(err)
			}
		}
		waitVersion(t, c, "bank_account-"+id, 119)
		waitVersion(t, c, "bank_account:snapshot-"+id, 1)
		// A new executor loads the snapshot at version 99 and reads the
		// last 20 events only.
		store := &countingStore{Client: c}
		fresh := aggregate.Bind(newExec(t, store, aggregate.Config{}), typ)
		s, v, err := fresh.Load(ctx, id)
		if err != nil || v != 119 || s.Balance != 120 || len(s.Log) != 120 {
			t.Fatalf("loaded %d/%d at %d: %v", s.Balance, len(s.Log), v, err)
		}
		if n := store.scanned.Load(); n != 20 {
			t.Fatalf("read %d events after the snapshot, want 20", n)
		}
		// Changed code (a new schema) ignores the old snapshot.
		store2 := &countingStore{Client: c}
		changed := aggregate.Bind(newExec(t, store2, aggregate.Config{}), accountType(aggregate.WithSnapshots[Account](50, 2)))
		s, v, err = changed.Load(ctx, id)
		if err != nil || v != 119 || s.Balance != 120 || store2.scanned.Load() != 120 {
			t.Fatalf("schema 2: balance %d at %d after %d events: %v", s.Balance, v, store2.scanned.Load(), err)
		}
		// Command tracking survives in the snapshot.
		msg := uuid.NewString()
		if _, err := accounts.Execute(ctx, id, Deposit{Amount: 1}, aggregate.WithCommandID(msg)); err != nil {
			t.Fatal(err)
		}
		for range 60 {
			accounts.Execute(ctx, id, Deposit{Amount: 1})
		}
		waitVersion(t, c, "bank_account-"+id, 180)
		waitVersion(t, c, "bank_account:snapshot-"+id, 2)
		again := aggregate.Bind(newExec(t, c, aggregate.Config{}), typ)
		if r, err := again.Execute(ctx, id, Deposit{Amount: 1}, aggregate.WithCommandID(msg)); err != nil || !r.Idempotent {
			t.Fatalf("a command id remembered before the snapshot ran again: %+v %v", r, err)
		}
	})
}

// gapStore serves a stream with a hole in its versions.
type gapStore struct{ aggregate.Store }

func (gapStore) Scan(ctx context.Context, stream string, from, to uint64, opts ...sierradb.ScanOption) (sierradb.ScanPage, error) {
	if from > 0 {
		return sierradb.ScanPage{}, nil
	}
	mk := func(v uint64) sierradb.Event {
		return sierradb.Event{StreamID: stream, StreamVersion: v, Name: "MoneyDeposited", Payload: []byte("\xa1\x6eMoneyDeposited\xa1\x66amount\x01")}
	}
	return sierradb.ScanPage{Events: []sierradb.Event{mk(0), mk(2)}}, nil
}

func TestVersionGapIsAnError(t *testing.T) {
	x, err := aggregate.NewExecutor(gapStore{}, aggregate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	_, _, err = aggregate.Bind(x, accountType()).Load(ctxT(t), "gap")
	var ge *aggregate.VersionGapError
	if !errors.As(err, &ge) || ge.Want != 1 || ge.Got != 2 || !errors.Is(err, aggregate.ErrVersionGap) {
		t.Fatalf("gap: %v", err)
	}
}

// Concurrent writes that never stop exhaust the retries with a typed error.
func TestConflictRetriesAreBounded(t *testing.T) {
	srv := embedded.RunT(t)
	c := newClient(t, srv.Addr())
	accounts := aggregate.Bind(newExec(t, c, aggregate.Config{MaxConflictRetries: 3}), accountType())
	ctx := ctxT(t)
	id := newID("conflict")
	accounts.Execute(ctx, id, Deposit{Amount: 1})
	stream := "bank_account-" + id
	for range 4 {
		srv.FailNext("EMAPPEND", "WRONGVER current stream version is 0 but expected 0 for partition key "+
			sierradb.StreamPartitionKey(stream).String()+" and stream id "+stream)
	}
	_, err := accounts.Execute(ctx, id, Deposit{Amount: 1})
	var ce *aggregate.ConflictError
	if !errors.As(err, &ce) || ce.Attempts != 4 || !errors.Is(err, aggregate.ErrTooManyConflicts) || !errors.Is(err, sierradb.ErrWrongExpectedVersion) {
		t.Fatalf("after 4 conflicts: %v", err)
	}
	// Three conflicts and then success: the retries absorb them.
	for range 3 {
		srv.FailNext("EMAPPEND", "WRONGVER current stream version is 0 but expected 0 for partition key "+
			sierradb.StreamPartitionKey(stream).String()+" and stream id "+stream)
	}
	if r, err := accounts.Execute(ctx, id, Deposit{Amount: 1}); err != nil || r.Version != 1 {
		t.Fatalf("after 3 conflicts: %+v %v", r, err)
	}
}

// A dropped connection during an append is retried with the same command
// id, so the command is written once.
func TestAmbiguousAppendIsNotDuplicated(t *testing.T) {
	srv := embedded.RunT(t)
	c := newClient(t, srv.Addr())
	accounts := aggregate.Bind(newExec(t, c, aggregate.Config{}), accountType())
	ctx := ctxT(t)
	id := newID("ambiguous")
	accounts.Execute(ctx, id, Deposit{Amount: 1})
	// The server stores the next append, then the connection fails
	// before the reply.
	srv.DropReplyNext("EMAPPEND")
	r, err := accounts.Execute(ctx, id, Deposit{Amount: 5})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(srv.Stream("bank_account-" + id)); got != 2 {
		t.Fatalf("%d events stored (result %+v): the retried append was written twice", got, r)
	}
	if !r.Idempotent {
		t.Fatalf("the retry should find the first write: %+v", r)
	}
}

func TestCacheEviction(t *testing.T) {
	srv := embedded.RunT(t)
	x := newExec(t, newClient(t, srv.Addr()), aggregate.Config{CacheSize: 5})
	accounts := aggregate.Bind(x, accountType())
	ctx := ctxT(t)
	for i := range 20 {
		if _, err := accounts.Execute(ctx, newID("e"), Deposit{Amount: uint32(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := x.CachedEntities(); n > 5 {
		t.Fatalf("%d entities cached, bound 5", n)
	}
}

// The executor's clock is injected: entities are idle only when the test
// moves it past IdleTimeout, so the janitor (every IdleTimeout/4 of real
// time) can neither drop them early on a slow machine nor be waited for
// with a guess.
func TestIdleEntitiesAreDropped(t *testing.T) {
	srv := embedded.RunT(t)
	var offset atomic.Int64 // nanoseconds the test moved the clock
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	x := newExec(t, newClient(t, srv.Addr()), aggregate.Config{IdleTimeout: 50 * time.Millisecond, Now: now})
	accounts := aggregate.Bind(x, accountType())
	ctx := ctxT(t)
	for range 3 {
		if _, err := accounts.Execute(ctx, newID("idle"), Deposit{Amount: 1}); err != nil {
			t.Fatal(err)
		}
	}
	// The clock goes back an hour: every entity was used "in the future",
	// so none is idle however slow the machine is, through several
	// janitor rounds.
	offset.Store(-int64(time.Hour))
	for range 10 {
		time.Sleep(15 * time.Millisecond)
		if n := x.CachedEntities(); n != 3 {
			t.Fatalf("%d cached before any entity was idle", n)
		}
	}
	offset.Store(int64(time.Hour)) // now every entity is an hour idle
	deadline := time.Now().Add(10 * time.Second)
	for x.CachedEntities() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := x.CachedEntities(); n != 0 {
		t.Fatalf("%d entities still cached an hour after their last use", n)
	}
}

// An entity in use is not evicted: with room for one entity, commands on
// other entities run while four callers keep sending slow commands to one
// busy entity. Were the busy entity evicted while its lock is held, the
// next caller would load a second copy with a second lock, and two of its
// handlers would run at once.
func TestEntityInUseIsNotEvicted(t *testing.T) {
	srv := embedded.RunT(t)
	x := newExec(t, newClient(t, srv.Addr()), aggregate.Config{CacheSize: 1})
	accounts := aggregate.Bind(x, accountType())
	ctx := ctxT(t)
	id := newID("busy")
	inHandler.Store(0)
	maxInHandler.Store(0)
	const callers, each = 4, 8
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := accounts.Execute(ctx, id, Slow{Amount: uint32(i), Delay: 2 * time.Millisecond}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2 * each {
				if _, err := accounts.Execute(ctx, newID("other"), Deposit{Amount: 1}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := maxInHandler.Load(); n != 1 {
		t.Fatalf("%d handlers of the busy entity ran at once: it was evicted while in use", n)
	}
	if _, v, err := accounts.Load(ctx, id); err != nil || v != callers*each-1 {
		t.Fatalf("version %d after %d commands (%v)", v, callers*each, err)
	}
}
