package checkpointtest

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/esmill/esmill/readmodel"
)

// Amounts with a meaning for the handlers.
const (
	alwaysFails = 1313 // the handler always fails: parked
	failsTwice  = 4242 // the handler fails twice, then succeeds
)

func (s *suite[T]) runner(t *testing.T) {
	f := s.fixture(t)
	st := s.h.New(t)
	f.append(t, f.generate(s.h.Events/2))

	r := f.runner(t, st, "proj")
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	f.sync(t, r)
	select {
	case <-r.Live():
	case <-time.After(time.Minute):
		t.Fatalf("not live after Sync: %+v", r.Status())
	}
	f.check(t, st, "proj")
	wait(t, "zero lag", 30*time.Second, func() bool {
		st := r.Status()
		return st.State == readmodel.Live && st.Lag == 0 && st.Handled > 0
	})
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := r.Status().State; got != readmodel.Stopped {
		t.Fatalf("state after Close = %v", got)
	}

	// New events while it is down; a new runner (over a reopened store
	// when the store is durable) resumes from the checkpoints.
	f.append(t, f.generate(s.h.Events/2))
	if s.h.Reopen != nil {
		st = s.h.Reopen(t, st)
	}
	r2 := f.runner(t, st, "proj")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r2.Run(ctx) }()
	f.sync(t, r2)
	// Live events, applied as they arrive.
	f.append(t, f.generate(20))
	f.sync(t, r2)
	f.check(t, st, "proj")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	if err := r2.Run(context.Background()); !errors.Is(err, readmodel.ErrRunning) {
		t.Fatalf("second Run = %v, want ErrRunning", err)
	}
	cps, err := st.Checkpoints(ctxT(t), "proj")
	if err != nil {
		t.Fatal(err)
	}
	for p, seq := range f.appended {
		if c, ok := cps[p]; !ok || c < seq {
			t.Fatalf("checkpoint of partition %d = %d (present %v), below the appended %d", p, c, ok, seq)
		}
	}
	if parked, err := st.Parked(ctxT(t), "proj"); err != nil || len(parked) != 0 {
		t.Fatalf("Parked = %v, %v; skipped events must not be parked", parked, err)
	}
}

func (s *suite[T]) runnerPoison(t *testing.T) {
	f := s.fixture(t)
	st := s.h.New(t)
	cat := f.typ.Category()
	evs := f.generate(s.h.Events / 4)
	evs = append(evs,
		newEvent{stream: cat + "-bad", name: "Deposited", raw: []byte{0xff, 0xfe}},
		newEvent{stream: cat + "-fails", ev: Deposited{Amount: alwaysFails}},
		newEvent{stream: cat + "-mystery", name: "Mystery", raw: nil},
		newEvent{stream: cat + "-flaky", ev: Deposited{Amount: failsTwice}},
	)
	f.ref["bal/flaky"] += failsTwice
	f.ref["n/flaky"]++
	evs = append(evs, f.generate(s.h.Events/4)...)
	f.append(t, evs)

	r := f.runner(t, st, "poison", func(c *readmodel.Config[T]) { c.UnknownEvents = readmodel.PoisonUnknown })
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	f.sync(t, r)
	f.check(t, st, "poison")
	f.s.wantValue(t, st, "poison", "bal/fails", 0)
	parked, err := st.Parked(ctxT(t), "poison")
	if err != nil {
		t.Fatal(err)
	}
	causes := make(map[string]readmodel.Cause)
	for _, p := range parked {
		causes[p.StreamID] = p.Cause
		if p.Reason == "" {
			t.Errorf("parked %s without a reason", p.StreamID)
		}
	}
	want := map[string]readmodel.Cause{cat + "-bad": readmodel.CauseDecode, cat + "-fails": readmodel.CauseHandler, cat + "-mystery": readmodel.CauseUnknown}
	if !maps.Equal(causes, want) {
		t.Fatalf("parked = %v, want %v", causes, want)
	}
	if st := r.Status(); st.Parked != 3 {
		t.Fatalf("Status.Parked = %d, want 3", st.Parked)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

func (s *suite[T]) runnerPoisonStop(t *testing.T) {
	f := s.fixture(t)
	st := s.h.New(t)
	cat := f.typ.Category()
	f.append(t, f.generate(s.h.Events/4))
	f.append(t, []newEvent{{stream: cat + "-bad", name: "Deposited", raw: []byte{0xff}}})
	r := f.runner(t, st, "stop", func(c *readmodel.Config[T]) { c.OnPoison = readmodel.Stop })
	err := r.Run(ctxT(t))
	var pe *readmodel.PoisonError
	if !errors.Is(err, readmodel.ErrPoison) || !errors.As(err, &pe) {
		t.Fatalf("Run = %v, want a *PoisonError", err)
	}
	if pe.Event.StreamID != cat+"-bad" || pe.Event.Cause != readmodel.CauseDecode {
		t.Fatalf("poison event = %+v", pe.Event)
	}
	cps, err := st.Checkpoints(ctxT(t), "stop")
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := cps[pe.Event.Partition]; ok && s >= pe.Event.Sequence {
		t.Fatalf("checkpoint %d passed the poison event at %d", s, pe.Event.Sequence)
	}
	if parked, _ := st.Parked(ctxT(t), "stop"); len(parked) != 0 {
		t.Fatalf("Stop parked %v", parked)
	}
	if !errors.Is(r.Err(), readmodel.ErrPoison) {
		t.Fatalf("Err = %v", r.Err())
	}
	// The next run meets it again.
	r2 := f.runner(t, st, "stop", func(c *readmodel.Config[T]) { c.OnPoison = readmodel.Stop })
	if err := r2.Run(ctxT(t)); !errors.Is(err, readmodel.ErrPoison) {
		t.Fatalf("second Run = %v, want ErrPoison", err)
	}
}

// twoRunners runs two runners of one projection at once, without leases:
// neither exits because of the other (a checkpoint conflict makes a
// runner read the checkpoints again and go on), whatever they commit, no
// event is applied twice, and a third runner completes the projection.
func (s *suite[T]) twoRunners(t *testing.T) {
	f := s.fixture(t)
	st := s.h.New(t)
	f.append(t, f.generate(s.h.Events))
	small := func(c *readmodel.Config[T]) { c.BatchSize = 16; c.BatchTimeout = time.Millisecond }
	a, b := f.runner(t, st, "twice", small), f.runner(t, st, "twice", small)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	heads := f.heads(t)
	for p, s := range f.appended {
		heads[p] = max(heads[p], int64(s))
	}
	wait(t, "the runners to apply everything", time.Minute, func() bool {
		for _, r := range []*readmodel.Runner[T]{a, b} {
			select {
			case <-r.Done():
				t.Fatalf("a runner stopped while another runs: %v", r.Err())
			default:
			}
		}
		cps, err := st.Checkpoints(ctxT(t), "twice")
		if err != nil {
			t.Fatal(err)
		}
		for p, h := range heads {
			if h >= 0 && int64(cps[p]) < h {
				return false
			}
		}
		return true
	})
	f.check(t, st, "twice")
	for _, r := range []*readmodel.Runner[T]{a, b} {
		if err := r.Close(); err != nil {
			t.Fatalf("runner ended with %v, want nil", err)
		}
	}
	c := f.runner(t, st, "twice")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	f.sync(t, c)
	f.check(t, st, "twice")
}

func (s *suite[T]) rebuild(t *testing.T) {
	f := s.fixture(t)
	st := s.h.New(t)
	ctx := ctxT(t)
	f.append(t, f.generate(s.h.Events/2))
	v1 := f.runner(t, st, "bal@v1")
	if err := v1.Start(); err != nil {
		t.Fatal(err)
	}
	f.sync(t, v1)
	f.check(t, st, "bal@v1")
	sw, canSwitch := st.(readmodel.Switcher)
	if canSwitch {
		if err := sw.SetActive(ctx, "bal", "bal@v1"); err != nil {
			t.Fatal(err)
		}
	}

	// Blue/green: v2 builds beside v1, which keeps serving and applying.
	v2 := f.runner(t, st, "bal@v2")
	if err := v2.Start(); err != nil {
		t.Fatal(err)
	}
	f.append(t, f.generate(s.h.Events/4))
	f.sync(t, v2)
	if canSwitch {
		if err := readmodel.SwitchWhenCaughtUp(ctx, v2, sw, "bal"); err != nil {
			t.Fatal(err)
		}
		if got, err := sw.Active(ctx, "bal"); err != nil || got != "bal@v2" {
			t.Fatalf("Active = %q, %v; want bal@v2", got, err)
		}
	}
	f.sync(t, v1)
	f.check(t, st, "bal@v2")
	f.check(t, st, "bal@v1")

	// Reset v1 and replay it from the start.
	if err := v1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Reset(ctx, "bal@v1", s.dropFunc("bal@v1")); err != nil {
		t.Fatal(err)
	}
	s.wantCheckpoints(t, st, "bal@v1", nil)
	for k := range f.ref {
		if f.ref[k] != 0 {
			s.wantValue(t, st, "bal@v1", k, 0)
			break
		}
	}
	again := f.runner(t, st, "bal@v1")
	if err := again.Start(); err != nil {
		t.Fatal(err)
	}
	f.sync(t, again)
	f.check(t, st, "bal@v1")
	f.check(t, st, "bal@v2")
}
