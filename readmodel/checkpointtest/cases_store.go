package checkpointtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/readmodel"
)

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

// recordServer: the first identity recorded stays (also across racing
// callers and a restart), per projection, until Reset forgets it.
func (s *suite[T]) recordServer(t *testing.T) {
	st := s.h.New(t)
	ctx := ctxT(t)
	if _, ok := st.(readmodel.ServerRecorder); !ok {
		t.Fatalf("%T does not implement readmodel.ServerRecorder; every store of this module must", st)
	}
	record := func(st readmodel.Store[T], proj, id string) string {
		t.Helper()
		got, err := st.(readmodel.ServerRecorder).RecordServer(ctx, proj, id)
		if err != nil {
			t.Fatalf("RecordServer(%s, %s): %v", proj, id, err)
		}
		return got
	}
	results := make(chan string, 4)
	for i := range 4 {
		go func() {
			got, err := st.(readmodel.ServerRecorder).RecordServer(ctx, "p", fmt.Sprintf("server-%d", i))
			if err != nil {
				got = "error: " + err.Error()
			}
			results <- got
		}()
	}
	first := <-results
	for range 3 {
		if got := <-results; got != first || !strings.HasPrefix(first, "server-") {
			t.Fatalf("racing RecordServer calls answered %q and %q; want one recorded identity", first, got)
		}
	}
	if got := record(st, "p", "another"); got != first {
		t.Fatalf("RecordServer after %q = %q, want the first one kept", first, got)
	}
	if got := record(st, "q", "server-q"); got != "server-q" {
		t.Fatalf("another projection: %q", got)
	}
	if s.h.Reopen != nil {
		st = s.h.Reopen(t, st)
		if got := record(st, "p", "after-restart"); got != first {
			t.Fatalf("after a restart: %q, want %q", got, first)
		}
	}
	if err := st.Reset(ctx, "p", s.dropFunc("p")); err != nil {
		t.Fatal(err)
	}
	if got := record(st, "p", "after-reset"); got != "after-reset" {
		t.Fatalf("after Reset: %q, want the new identity", got)
	}
	if got := record(st, "q", "x"); got != "server-q" {
		t.Fatalf("Reset of p forgot q's identity: %q", got)
	}
}
