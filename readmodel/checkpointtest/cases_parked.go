package checkpointtest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/esmill/esmill/readmodel"
)

func resolution(a readmodel.Action, by, note string) readmodel.Resolution {
	return readmodel.Resolution{Action: a, By: by, Note: note, At: time.Now().UTC().Truncate(time.Millisecond)}
}

// unpark runs a transaction that unparks pos, makes the writes (at pos)
// and commits.
func (s *suite[T]) unpark(t testing.TB, st readmodel.Store[T], proj string, p readmodel.Position, r readmodel.Resolution, ws ...write) (readmodel.ParkedEvent, error) {
	t.Helper()
	ctx := ctxT(t)
	tx, err := st.Begin(ctx, proj)
	if err != nil {
		return readmodel.ParkedEvent{}, err
	}
	ev, err := tx.Unpark(ctx, p, r)
	if err != nil {
		tx.Rollback(ctx)
		return ev, err
	}
	for _, w := range ws {
		if err := s.h.Add(ctx, tx.Handle(p), proj, w.key, w.delta); err != nil {
			tx.Rollback(ctx)
			t.Fatalf("Add: %v", err)
		}
	}
	if err := tx.Commit(ctx, nil); err != nil {
		tx.Rollback(ctx)
		return ev, err
	}
	return ev, nil
}

func sameParked(a, b readmodel.ParkedEvent) bool {
	return a.Position == b.Position && a.EventID == b.EventID && a.StreamID == b.StreamID &&
		a.StreamVersion == b.StreamVersion && a.Name == b.Name && string(a.Payload) == string(b.Payload) &&
		string(a.Metadata) == string(b.Metadata) && a.Cause == b.Cause && a.Reason == b.Reason &&
		a.Attempts == b.Attempts && a.ParkedAt.Equal(b.ParkedAt)
}

// unparkCase: Unpark takes one event off the parked list with the
// transaction's writes, records the resolution, and answers ErrNotParked
// for a position that is not (or no longer) parked. A rolled-back unpark
// leaves the event parked.
func (s *suite[T]) unparkCase(t *testing.T) {
	st := s.h.New(t)
	ctx := ctxT(t)
	p1, p2, p3 := parkedEvent(2, 3, "handler: boom"), parkedEvent(2, 5, "bad payload"), parkedEvent(4, 1, "x")
	p1.Cause = readmodel.CauseHandler
	// Later events of partition 2 wrote "a" before the replay of 2:3: a
	// replay applies its writes all the same.
	if err := s.apply(t, st, "p", []write{{pos(2, 4), "a", 1}, {pos(2, 6), "a", 1}}, []readmodel.ParkedEvent{p1, p2, p3}, adv(2, -1, 6), adv(4, -1, 1)); err != nil {
		t.Fatal(err)
	}

	// Rolled back: still parked.
	tx, err := st.Begin(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tx.Unpark(ctx, p1.Position, resolution(readmodel.Replayed, "x", "y")); err != nil || !sameParked(got, p1) {
		t.Fatalf("Unpark = %+v, %v; want %+v", got, err, p1)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if parked, err := st.Parked(ctx, "p"); err != nil || len(parked) != 3 {
		t.Fatalf("Parked after a rolled-back Unpark = %v, %v; want 3", parked, err)
	}

	// Replayed: its writes and its removal commit together.
	r1 := resolution(readmodel.Replayed, "alice", "handler fixed in v1.2")
	got, err := s.unpark(t, st, "p", p1.Position, r1, write{p1.Position, "a", 10})
	if err != nil || !sameParked(got, p1) {
		t.Fatalf("Unpark = %+v, %v; want %+v", got, err, p1)
	}
	s.wantValue(t, st, "p", "a", 12)
	// Skipped: nothing written.
	r3 := resolution(readmodel.Skipped, "bob", "duplicate of a manual fix")
	if _, err := s.unpark(t, st, "p", p3.Position, r3); err != nil {
		t.Fatal(err)
	}
	s.wantCheckpoints(t, st, "p", map[uint16]uint64{2: 6, 4: 1})

	// Again, or not parked at all: ErrNotParked, nothing written.
	for _, p := range []readmodel.Position{p1.Position, pos(2, 4), pos(9, 9)} {
		_, err := s.unpark(t, st, "p", p, r1, write{p, "a", 100})
		var npe *readmodel.NotParkedError
		if !errors.Is(err, readmodel.ErrNotParked) || !errors.As(err, &npe) || npe.Position != p {
			t.Fatalf("Unpark(%s) = %v, want a *NotParkedError", p, err)
		}
	}
	s.wantValue(t, st, "p", "a", 12)

	parked, err := st.Parked(ctx, "p")
	if err != nil || len(parked) != 1 || !sameParked(parked[0], p2) {
		t.Fatalf("Parked = %+v, %v; want only %+v", parked, err, p2)
	}
	resolved, err := st.Resolved(ctx, "p")
	if err != nil || len(resolved) != 2 {
		t.Fatalf("Resolved = %+v, %v; want 2", resolved, err)
	}
	for i, want := range []struct {
		ev readmodel.ParkedEvent
		r  readmodel.Resolution
	}{{p1, r1}, {p3, r3}} {
		g := resolved[i]
		if !sameParked(g.ParkedEvent, want.ev) || g.Resolution.Action != want.r.Action || g.Resolution.By != want.r.By ||
			g.Resolution.Note != want.r.Note || !g.Resolution.At.Equal(want.r.At) {
			t.Fatalf("Resolved[%d] = %+v, want %+v %+v", i, g, want.ev, want.r)
		}
	}
	if r, err := st.Resolved(ctx, "other"); err != nil || len(r) != 0 {
		t.Fatalf("Resolved(other) = %v, %v", r, err)
	}

	// Durable, and forgotten by Reset.
	if s.h.Reopen != nil {
		st = s.h.Reopen(t, st)
		if r, err := st.Resolved(ctx, "p"); err != nil || len(r) != 2 || r[0].Resolution.Note != r1.Note {
			t.Fatalf("Resolved after reopen = %+v, %v", r, err)
		}
	}
	if err := st.Reset(ctx, "p", s.dropFunc("p")); err != nil {
		t.Fatal(err)
	}
	if r, err := st.Resolved(ctx, "p"); err != nil || len(r) != 0 {
		t.Fatalf("Resolved after Reset = %v, %v", r, err)
	}
}

// unparkOnce: transactions racing to unpark (replay) one event: exactly
// one commits, and its write is applied once.
func (s *suite[T]) unparkOnce(t *testing.T) {
	st := s.h.New(t)
	ev := parkedEvent(3, 8, "boom")
	if err := s.apply(t, st, "p", nil, []readmodel.ParkedEvent{ev}, adv(3, -1, 8)); err != nil {
		t.Fatal(err)
	}
	const n = 4
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.unpark(t, st, "p", ev.Position, resolution(readmodel.Replayed, "racer", ""), write{ev.Position, "k", 1})
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, readmodel.ErrNotParked), errors.Is(err, readmodel.ErrCheckpointConflict):
		default:
			t.Fatalf("Unpark = %v, want nil, ErrNotParked or ErrCheckpointConflict", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d transactions unparked one event (%v), want 1", won, errs)
	}
	s.wantValue(t, st, "p", "k", 1)
	if r, err := st.Resolved(ctxT(t), "p"); err != nil || len(r) != 1 {
		t.Fatalf("Resolved = %v, %v; want 1", r, err)
	}
}
