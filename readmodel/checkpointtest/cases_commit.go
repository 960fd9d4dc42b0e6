package checkpointtest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/esmill/esmill/readmodel"
)

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
	// The replay of the same events applies each exactly once (this case
	// runs in every store's TestContract; tested: TestContract).
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
