package checkpointtest

import (
	"context"
	"testing"
	"time"

	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/sierradb/embedded"
)

// Harness adapts a store to the suite.
type Harness[T any] struct {
	// New returns a new, empty store. Register its cleanup with t.
	// Required.
	New func(t testing.TB) readmodel.Store[T]
	// Reopen closes s and returns a store over the same data, as after a
	// restart. Nil for stores that keep nothing (memory).
	Reopen func(t testing.TB, s readmodel.Store[T]) readmodel.Store[T]
	// Add adds delta to the integer stored under key in the projection's
	// read model, writing through the handle tx (creating it at 0).
	// Required.
	Add func(ctx context.Context, tx T, projection, key string, delta int64) error
	// Get reads the committed integer under key in the projection's read
	// model. Required.
	Get func(ctx context.Context, s readmodel.Store[T], projection, key string) (v int64, ok bool, err error)
	// Drop removes the projection's read model, for Reset. Nil when the
	// store owns the model (memory, file).
	Drop func(ctx context.Context, tx T, projection string) error
	// NonAtomic says that writes through a transaction that is rolled
	// back, or whose commit fails, may stay (MongoDB without
	// transactions). The suite then checks that re-applying them at the
	// same positions changes nothing, instead of checking that they
	// vanished.
	NonAtomic bool
	// SierraAddr returns the SierraDB the runner tests use.
	// Default: a fresh embedded server per test.
	SierraAddr func(t testing.TB) string
	// Events is the number of events of the runner tests. Default: 400
	// (100 under -short).
	Events int
}

// Run runs the suite.
func Run[T any](t *testing.T, h Harness[T]) {
	if h.New == nil || h.Add == nil || h.Get == nil {
		t.Fatal("checkpointtest: Harness needs New, Add and Get")
	}
	if h.SierraAddr == nil {
		h.SierraAddr = func(t testing.TB) string { return embedded.RunT(t).Addr() }
	}
	if h.Events == 0 {
		h.Events = 400
		if testing.Short() {
			h.Events = 100
		}
	}
	s := &suite[T]{h: h}
	t.Run("EmptyCheckpoints", s.emptyCheckpoints)
	t.Run("CommitAdvances", s.commitAdvances)
	t.Run("RollbackAndReplay", s.rollbackAndReplay)
	t.Run("CompareAndSet", s.compareAndSet)
	t.Run("ConcurrentCommit", s.concurrentCommit)
	t.Run("ConcurrentDisjointCommits", s.disjointCommits)
	t.Run("ProjectionsAreIsolated", s.isolated)
	t.Run("Park", s.park)
	t.Run("Reset", s.reset)
	t.Run("Switch", s.switcher)
	t.Run("RecordServer", s.recordServer)
	t.Run("Durable", s.durable)
	t.Run("InvalidName", s.invalidName)
	t.Run("Runner", s.runner)
	t.Run("RunnerPoison", s.runnerPoison)
	t.Run("RunnerPoisonStop", s.runnerPoisonStop)
	t.Run("TwoRunners", s.twoRunners)
	t.Run("Rebuild", s.rebuild)
}

type suite[T any] struct{ h Harness[T] }

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func (s *suite[T]) get(t testing.TB, st readmodel.Store[T], proj, key string) (int64, bool) {
	t.Helper()
	v, ok, err := s.h.Get(ctxT(t), st, proj, key)
	if err != nil {
		t.Fatalf("Get(%s, %s): %v", proj, key, err)
	}
	return v, ok
}

func (s *suite[T]) wantValue(t testing.TB, st readmodel.Store[T], proj, key string, want int64) {
	t.Helper()
	v, ok := s.get(t, st, proj, key)
	if want == 0 && !ok {
		return
	}
	if !ok || v != want {
		t.Fatalf("%s/%s = %d (present %v), want %d", proj, key, v, ok, want)
	}
}

func (s *suite[T]) wantCheckpoints(t testing.TB, st readmodel.Store[T], proj string, want map[uint16]uint64) {
	t.Helper()
	got, err := st.Checkpoints(ctxT(t), proj)
	if err != nil {
		t.Fatalf("Checkpoints(%s): %v", proj, err)
	}
	if len(got) != len(want) {
		t.Fatalf("Checkpoints(%s) = %v, want %v", proj, got, want)
	}
	for p, w := range want {
		if g, ok := got[p]; !ok || g != w {
			t.Fatalf("Checkpoints(%s) = %v, want %v", proj, got, want)
		}
	}
}

// write is one read-model write at a position.
type write struct {
	pos   readmodel.Position
	key   string
	delta int64
}

// apply runs a transaction that makes the writes, parks the parked events
// and commits the advances.
func (s *suite[T]) apply(t testing.TB, st readmodel.Store[T], proj string, ws []write, parked []readmodel.ParkedEvent, adv ...readmodel.Advance) error {
	t.Helper()
	ctx := ctxT(t)
	tx, err := st.Begin(ctx, proj)
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	for _, w := range ws {
		if err := s.h.Add(ctx, tx.Handle(w.pos), proj, w.key, w.delta); err != nil {
			tx.Rollback(ctx)
			t.Fatalf("Add: %v", err)
		}
	}
	for _, p := range parked {
		if err := tx.Park(ctx, p); err != nil {
			tx.Rollback(ctx)
			t.Fatalf("Park: %v", err)
		}
	}
	err = tx.Commit(ctx, adv)
	if err != nil {
		tx.Rollback(ctx)
	}
	return err
}

func (s *suite[T]) mustApply(t testing.TB, st readmodel.Store[T], proj string, ws []write, adv ...readmodel.Advance) {
	t.Helper()
	if err := s.apply(t, st, proj, ws, nil, adv...); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func pos(p uint16, s uint64) readmodel.Position { return readmodel.Position{Partition: p, Sequence: s} }

func adv(p uint16, prev int64, next uint64) readmodel.Advance {
	return readmodel.Advance{Partition: p, Prev: prev, Next: next}
}

// wait polls cond until it holds or the deadline passes.
func wait(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
