package checkpointtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

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

func (s *suite[T]) emptyCheckpoints(t *testing.T) {
	st := s.h.New(t)
	s.wantCheckpoints(t, st, "empty", nil)
	parked, err := st.Parked(ctxT(t), "empty")
	if err != nil || len(parked) != 0 {
		t.Fatalf("Parked = %v, %v; want none", parked, err)
	}
	s.wantValue(t, st, "empty", "k", 0)
}

func (s *suite[T]) commitAdvances(t *testing.T) {
	st := s.h.New(t)
	s.mustApply(t, st, "p", []write{{pos(1, 0), "a", 5}}, adv(1, -1, 0))
	s.wantCheckpoints(t, st, "p", map[uint16]uint64{1: 0})
	s.wantValue(t, st, "p", "a", 5)
	s.mustApply(t, st, "p", []write{{pos(1, 1), "a", 2}, {pos(2, 0), "b", 3}, {pos(1, 7), "a", 1}},
		adv(1, 0, 7), adv(2, -1, 0))
	s.wantCheckpoints(t, st, "p", map[uint16]uint64{1: 7, 2: 0})
	s.wantValue(t, st, "p", "a", 8)
	s.wantValue(t, st, "p", "b", 3)
	// A batch of skipped events moves the checkpoint without writes.
	s.mustApply(t, st, "p", nil, adv(2, 0, 40))
	s.wantCheckpoints(t, st, "p", map[uint16]uint64{1: 7, 2: 40})
}

func (s *suite[T]) rollbackAndReplay(t *testing.T) {
	st := s.h.New(t)
	ctx := ctxT(t)
	s.mustApply(t, st, "p", []write{{pos(1, 0), "a", 5}}, adv(1, -1, 0))

	tx, err := st.Begin(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []write{{pos(1, 1), "a", 7}, {pos(1, 2), "b", 1}} {
		if err := s.h.Add(ctx, tx.Handle(w.pos), "p", w.key, w.delta); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatalf("second Rollback: %v", err)
	}
	s.wantCheckpoints(t, st, "p", map[uint16]uint64{1: 0})
	if !s.h.NonAtomic {
		s.wantValue(t, st, "p", "a", 5)
		s.wantValue(t, st, "p", "b", 0)
	}
	// The replay of the same events applies each exactly once.
	s.mustApply(t, st, "p", []write{{pos(1, 1), "a", 7}, {pos(1, 2), "b", 1}}, adv(1, 0, 2))
	s.wantValue(t, st, "p", "a", 12)
	s.wantValue(t, st, "p", "b", 1)
	s.wantCheckpoints(t, st, "p", map[uint16]uint64{1: 2})
}

func (s *suite[T]) compareAndSet(t *testing.T) {
	st := s.h.New(t)
	s.mustApply(t, st, "p", []write{{pos(3, 4), "a", 1}}, adv(3, -1, 4))
	for _, tc := range []struct {
		name string
		adv  []readmodel.Advance
	}{
		{"stale", []readmodel.Advance{adv(3, 2, 9)}},
		{"ahead", []readmodel.Advance{adv(3, 6, 9)}},
		{"none expected but present", []readmodel.Advance{adv(3, -1, 9)}},
		{"expected but absent", []readmodel.Advance{adv(4, 0, 9)}},
		{"one of two wrong", []readmodel.Advance{adv(3, 4, 9), adv(5, 1, 3)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.apply(t, st, "p", []write{{pos(3, 9), "x", 1}}, nil, tc.adv...)
			if !errors.Is(err, readmodel.ErrCheckpointConflict) {
				t.Fatalf("Commit = %v, want ErrCheckpointConflict", err)
			}
			s.wantCheckpoints(t, st, "p", map[uint16]uint64{3: 4})
			if !s.h.NonAtomic {
				s.wantValue(t, st, "p", "x", 0)
			}
		})
	}
}

// concurrentCommit: two transactions advance one partition from the same
// checkpoint, as two runners of one projection would; exactly one wins.
func (s *suite[T]) concurrentCommit(t *testing.T) {
	st := s.h.New(t)
	ctx := ctxT(t)
	s.mustApply(t, st, "p", []write{{pos(0, 0), "c", 1}}, adv(0, -1, 0))
	var wg sync.WaitGroup
	errs := make([]error, 2)
	start := make(chan struct{})
	for i := range 2 {
		wg.Go(func() {
			<-start
			tx, err := st.Begin(ctx, "p")
			if err != nil {
				errs[i] = err
				return
			}
			if err := s.h.Add(ctx, tx.Handle(pos(0, 1)), "p", "c", 10); err != nil {
				tx.Rollback(ctx)
				errs[i] = err
				return
			}
			if err := s.h.Add(ctx, tx.Handle(pos(0, 1)), "p", fmt.Sprintf("only%d", i), 1); err != nil {
				tx.Rollback(ctx)
				errs[i] = err
				return
			}
			errs[i] = tx.Commit(ctx, []readmodel.Advance{adv(0, 0, 1)})
			if errs[i] != nil {
				tx.Rollback(ctx)
			}
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("both commits succeeded")
			}
			winner = i
		case errors.Is(err, readmodel.ErrCheckpointConflict):
		default:
			t.Fatalf("transaction %d: %v, want success or ErrCheckpointConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("no commit succeeded: %v", errs)
	}
	s.wantCheckpoints(t, st, "p", map[uint16]uint64{0: 1})
	s.wantValue(t, st, "p", "c", 11)
	s.wantValue(t, st, "p", fmt.Sprintf("only%d", winner), 1)
	if !s.h.NonAtomic {
		s.wantValue(t, st, "p", fmt.Sprintf("only%d", 1-winner), 0)
	}
}

// disjointCommits: two transactions advance different partitions at once.
// Both may commit only if neither loses the other's writes (a store that
// replaces a whole model must refuse the second).
func (s *suite[T]) disjointCommits(t *testing.T) {
	st := s.h.New(t)
	ctx := ctxT(t)
	var mu sync.Mutex
	added := 0
	both := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() {
			var once sync.Once
			signal := func() {
				once.Do(func() {
					mu.Lock()
					if added++; added == 2 {
						close(both)
					}
					mu.Unlock()
				})
			}
			defer signal()
			tx, err := st.Begin(ctx, "p")
			if err != nil {
				errs[i] = err
				return
			}
			if err := s.h.Add(ctx, tx.Handle(pos(uint16(i), 0)), "p", fmt.Sprintf("k%d", i), int64(i+1)); err != nil {
				tx.Rollback(ctx)
				errs[i] = err
				return
			}
			signal()
			// Let the other begin and write too, where the store allows.
			select {
			case <-both:
			case <-time.After(200 * time.Millisecond):
			}
			errs[i] = tx.Commit(ctx, []readmodel.Advance{adv(uint16(i), -1, 0)})
			if errs[i] != nil {
				tx.Rollback(ctx)
			}
		})
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		key := fmt.Sprintf("k%d", i)
		switch {
		case err == nil:
			ok++
			s.wantValue(t, st, "p", key, int64(i+1))
		case errors.Is(err, readmodel.ErrCheckpointConflict):
			if !s.h.NonAtomic {
				s.wantValue(t, st, "p", key, 0)
			}
		default:
			t.Fatalf("transaction %d: %v", i, err)
		}
	}
	if ok == 0 {
		t.Fatalf("no transaction committed: %v", errs)
	}
}

func (s *suite[T]) isolated(t *testing.T) {
	st := s.h.New(t)
	s.mustApply(t, st, "one", []write{{pos(1, 0), "k", 1}}, adv(1, -1, 0))
	s.mustApply(t, st, "two@v2", []write{{pos(1, 0), "k", 20}, {pos(2, 5), "k", 20}}, adv(1, -1, 0), adv(2, -1, 5))
	s.wantCheckpoints(t, st, "one", map[uint16]uint64{1: 0})
	s.wantCheckpoints(t, st, "two@v2", map[uint16]uint64{1: 0, 2: 5})
	s.wantValue(t, st, "one", "k", 1)
	s.wantValue(t, st, "two@v2", "k", 40)
}

func parkedEvent(p, seq uint64, reason string) readmodel.ParkedEvent {
	return readmodel.ParkedEvent{
		Position: pos(uint16(p), seq), EventID: uuid.New(), StreamID: fmt.Sprintf("acct-%d", seq),
		StreamVersion: seq + 1, Name: "Deposited", Payload: []byte{0xff, 0x00, 0x01}, Metadata: []byte{0xa0},
		Cause: readmodel.CauseDecode, Reason: reason, Attempts: 3, ParkedAt: time.Now().UTC().Truncate(time.Millisecond),
	}
}

func (s *suite[T]) park(t *testing.T) {
	st := s.h.New(t)
	ctx := ctxT(t)
	p1, p2 := parkedEvent(2, 7, "bad payload"), parkedEvent(1, 3, "handler: boom")
	p2.Cause, p2.Payload, p2.Metadata = readmodel.CauseHandler, nil, nil
	if err := s.apply(t, st, "p", []write{{pos(2, 6), "a", 1}}, []readmodel.ParkedEvent{p1, p2}, adv(1, -1, 3), adv(2, -1, 7)); err != nil {
		t.Fatal(err)
	}
	if !s.h.NonAtomic {
		// A parked event of a rolled-back transaction is not kept.
		if err := s.apply(t, st, "p", nil, []readmodel.ParkedEvent{parkedEvent(2, 9, "x")}, adv(2, 3, 9)); !errors.Is(err, readmodel.ErrCheckpointConflict) {
			t.Fatalf("Commit = %v, want conflict", err)
		}
	}
	got, err := st.Parked(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	want := []readmodel.ParkedEvent{p2, p1}
	if len(got) != len(want) {
		t.Fatalf("Parked = %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Position != w.Position || g.EventID != w.EventID || g.StreamID != w.StreamID ||
			g.StreamVersion != w.StreamVersion || g.Name != w.Name || string(g.Payload) != string(w.Payload) ||
			string(g.Metadata) != string(w.Metadata) || g.Cause != w.Cause || g.Reason != w.Reason ||
			g.Attempts != w.Attempts || !g.ParkedAt.Equal(w.ParkedAt) {
			t.Fatalf("Parked[%d] = %+v, want %+v", i, g, w)
		}
	}
	other, err := st.Parked(ctx, "other")
	if err != nil || len(other) != 0 {
		t.Fatalf("Parked(other) = %v, %v; want none", other, err)
	}
}

func (s *suite[T]) dropFunc(proj string) func(ctx context.Context, tx T) error {
	if s.h.Drop == nil {
		return nil
	}
	return func(ctx context.Context, tx T) error { return s.h.Drop(ctx, tx, proj) }
}

func (s *suite[T]) reset(t *testing.T) {
	st := s.h.New(t)
	ctx := ctxT(t)
	for _, p := range []string{"p", "keep"} {
		if err := s.apply(t, st, p, []write{{pos(1, 0), "a", 5}}, []readmodel.ParkedEvent{parkedEvent(1, 1, "r")}, adv(1, -1, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Reset(ctx, "p", s.dropFunc("p")); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	s.wantCheckpoints(t, st, "p", nil)
	s.wantValue(t, st, "p", "a", 0)
	if parked, err := st.Parked(ctx, "p"); err != nil || len(parked) != 0 {
		t.Fatalf("Parked after Reset = %v, %v", parked, err)
	}
	s.wantCheckpoints(t, st, "keep", map[uint16]uint64{1: 1})
	s.wantValue(t, st, "keep", "a", 5)
	// The projection starts again from nothing.
	s.mustApply(t, st, "p", []write{{pos(1, 0), "a", 5}}, adv(1, -1, 0))
	s.wantValue(t, st, "p", "a", 5)
}

func (s *suite[T]) switcher(t *testing.T) {
	st := s.h.New(t)
	sw, ok := st.(readmodel.Switcher)
	if !ok {
		t.Log("not applicable: the store is not a readmodel.Switcher")
		return
	}
	ctx := ctxT(t)
	if _, err := sw.Active(ctx, "balances"); !errors.Is(err, readmodel.ErrNoActive) {
		t.Fatalf("Active before SetActive = %v, want ErrNoActive", err)
	}
	for _, p := range []string{"balances@v1", "balances@v2"} {
		if err := sw.SetActive(ctx, "balances", p); err != nil {
			t.Fatal(err)
		}
		if got, err := sw.Active(ctx, "balances"); err != nil || got != p {
			t.Fatalf("Active = %q, %v; want %q", got, err, p)
		}
	}
	if _, err := sw.Active(ctx, "other"); !errors.Is(err, readmodel.ErrNoActive) {
		t.Fatalf("Active(other) = %v, want ErrNoActive", err)
	}
}

func (s *suite[T]) durable(t *testing.T) {
	if s.h.Reopen == nil {
		t.Log("not applicable: the store keeps nothing across restarts")
		return
	}
	st := s.h.New(t)
	if err := s.apply(t, st, "p", []write{{pos(1, 0), "a", 5}, {pos(9, 3), "b", 2}}, []readmodel.ParkedEvent{parkedEvent(9, 4, "r")}, adv(1, -1, 0), adv(9, -1, 4)); err != nil {
		t.Fatal(err)
	}
	if sw, ok := st.(readmodel.Switcher); ok {
		if err := sw.SetActive(ctxT(t), "p-name", "p"); err != nil {
			t.Fatal(err)
		}
	}
	st = s.h.Reopen(t, st)
	s.wantCheckpoints(t, st, "p", map[uint16]uint64{1: 0, 9: 4})
	s.wantValue(t, st, "p", "a", 5)
	s.wantValue(t, st, "p", "b", 2)
	if parked, err := st.Parked(ctxT(t), "p"); err != nil || len(parked) != 1 || parked[0].Reason != "r" {
		t.Fatalf("Parked after reopen = %v, %v", parked, err)
	}
	if sw, ok := st.(readmodel.Switcher); ok {
		if got, err := sw.Active(ctxT(t), "p-name"); err != nil || got != "p" {
			t.Fatalf("Active after reopen = %q, %v", got, err)
		}
	}
	s.mustApply(t, st, "p", []write{{pos(1, 1), "a", 1}}, adv(1, 0, 1))
	s.wantValue(t, st, "p", "a", 6)
}

func (s *suite[T]) invalidName(t *testing.T) {
	st := s.h.New(t)
	ctx := ctxT(t)
	for _, name := range []string{"", "a.b", "a/b", "-x", strings.Repeat("n", 101), "a b", "$x"} {
		if _, err := st.Checkpoints(ctx, name); !errors.Is(err, readmodel.ErrInvalidName) {
			t.Errorf("Checkpoints(%q) = %v, want ErrInvalidName", name, err)
		}
		if tx, err := st.Begin(ctx, name); !errors.Is(err, readmodel.ErrInvalidName) {
			if tx != nil {
				tx.Rollback(ctx)
			}
			t.Errorf("Begin(%q) = %v, want ErrInvalidName", name, err)
		}
	}
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
