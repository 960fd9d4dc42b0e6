package reactor_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/reactor"
	"github.com/esmill/esmill/readmodel"
)

func TestMain(m *testing.M) { os.Exit(testservice.Main(m)) }

func newReactor(t *testing.T, e *env, st readmodel.Store[tx], hs []reactor.Handler[tx], mod ...func(*reactor.Config[tx])) *reactor.Reactor[tx] {
	t.Helper()
	cfg := reactor.Config[tx]{
		Name: "charges", Client: e.client, Store: st, Executor: e.exec, Handlers: hs,
		BatchTimeout: 2 * time.Millisecond, MaxAttempts: 3, RetryBackoff: time.Millisecond,
		MaxRetryBackoff: 10 * time.Millisecond, LagInterval: 10 * time.Millisecond,
	}
	for _, m := range mod {
		m(&cfg)
	}
	r, err := reactor.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// chargeAndNote charges the order's wallet and notes it in the audit
// wallet: two commands for one event.
func chargeAndNote(ctx context.Context, a *reactor.Act[tx], id string, e Placed) error {
	if _, err := reactor.Execute(ctx, a, Wallets, e.Wallet, Charge{Amount: e.Amount}); err != nil {
		return err
	}
	_, err := reactor.Execute(ctx, a, Wallets, "audit", Note{Text: id})
	return err
}

func waitFor(t *testing.T, r *reactor.Reactor[tx], e *env) {
	t.Helper()
	if err := r.WaitFor(ctxT(t), e.positions()...); err != nil {
		t.Fatalf("WaitFor: %v (status %+v)", err, r.Status())
	}
}

// wantOnce checks that every placed order caused exactly one charge of
// its wallet and one note in the audit wallet.
func (e *env) wantOnce(t *testing.T, wallets ...string) {
	t.Helper()
	charges := make(map[string]int)
	for _, w := range wallets {
		for cause, n := range e.caused(t, w) {
			if n["Charged"] != 1 || len(n) != 1 {
				t.Errorf("wallet %s: order event %s caused %v, want one Charged", w, cause, n)
			}
			charges[cause.String()]++
		}
	}
	notes := e.caused(t, "audit")
	for _, p := range e.placed {
		if charges[p.ID.String()] != 1 {
			t.Errorf("order event %s caused %d charges, want 1", p.ID, charges[p.ID.String()])
		}
		if n := notes[p.ID]; n["Noted"] != 1 || len(n) != 1 {
			t.Errorf("order event %s caused notes %v, want one Noted", p.ID, n)
		}
	}
}

// Every event's commands run once, with its causation; a second pass over
// the same events (a redelivery of all of them) is answered idempotent.
func TestExecuteOncePerEvent(t *testing.T) {
	e := newEnv(t)
	st := newStore()
	wallets := []string{"w0", "w1", "w2"}
	for i := range 12 {
		e.place(t, fmt.Sprintf("o%d", i%5), wallets[i%3], int64(i+1))
	}
	hs := []reactor.Handler[tx]{reactor.On(Orders, chargeAndNote)}
	r := newReactor(t, e, st, hs)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, r, e)
	if s := r.Stats(); s.Executed != 24 || s.Idempotent != 0 || s.Failed != 0 {
		t.Fatalf("Stats = %+v, want 24 executed", s)
	}
	e.wantOnce(t, wallets...)
	before := cloneCounts(e.caused(t, "w0"))
	r.Close()

	// Forget the checkpoints: every event is delivered again.
	if err := st.Reset(ctxT(t), "charges", nil); err != nil {
		t.Fatal(err)
	}
	again := newReactor(t, e, st, hs)
	if err := again.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, again, e)
	if s := again.Stats(); s.Executed != 0 || s.Idempotent != 24 {
		t.Fatalf("second pass Stats = %+v, want 24 idempotent", s)
	}
	e.wantOnce(t, wallets...)
	if got := e.caused(t, "w0"); len(got) != len(before) {
		t.Fatalf("w0 caused by %d events after the second pass, was %d", len(got), len(before))
	}
}

// A handler that runs two commands for one event and is stopped between
// them (the process dies, here the runner is closed before the batch
// commits): the next run delivers the event again; the first command comes
// back idempotent and the second runs, each once.
func TestStoppedBetweenTwoCommands(t *testing.T) {
	e := newEnv(t)
	st := newStore()
	e.place(t, "o1", "w0", 7)
	between := make(chan struct{})
	var once sync.Once
	stuck := reactor.On(Orders, func(ctx context.Context, a *reactor.Act[tx], id string, ev Placed) error {
		if _, err := reactor.Execute(ctx, a, Wallets, ev.Wallet, Charge{Amount: ev.Amount}); err != nil {
			return err
		}
		first := false
		once.Do(func() { first = true })
		if first {
			close(between)
			<-ctx.Done() // killed here
			return ctx.Err()
		}
		_, err := reactor.Execute(ctx, a, Wallets, "audit", Note{Text: id})
		return err
	})
	r1 := newReactor(t, e, st, []reactor.Handler[tx]{stuck})
	if err := r1.Start(); err != nil {
		t.Fatal(err)
	}
	<-between
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	if cps, _ := st.Checkpoints(ctxT(t), "charges"); len(cps) != 0 {
		t.Fatalf("the stopped batch committed: %v", cps)
	}
	r2 := newReactor(t, e, st, []reactor.Handler[tx]{stuck})
	if err := r2.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, r2, e)
	if s := r2.Stats(); s.Idempotent != 1 || s.Executed != 1 {
		t.Fatalf("Stats after the restart = %+v, want the charge idempotent and the note executed", s)
	}
	e.wantOnce(t, "w0")
}

// A rejected command is final: returned by the handler, the event is
// parked at once with the reason (not retried), and the later events of
// its stream wait behind it; skipping it releases them.
func TestRejectedIsParkedOnce(t *testing.T) {
	e := newEnv(t)
	st := newStore()
	var calls atomic.Int64
	hs := []reactor.Handler[tx]{reactor.On(Orders, func(ctx context.Context, a *reactor.Act[tx], id string, ev Placed) error {
		calls.Add(1)
		return chargeAndNote(ctx, a, id, ev)
	})}
	e.place(t, "o1", "w0", limit+1) // rejected
	e.place(t, "o1", "w0", 5)       // same order stream: held
	e.place(t, "o2", "w1", 6)       // another stream: goes on
	r := newReactor(t, e, st, hs)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, r, e)
	parked, err := r.Admin().List(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 2 || parked[0].Cause != readmodel.CauseHandler || !strings.Contains(parked[0].Reason, "over the limit") ||
		parked[1].Cause != readmodel.CauseHeld || parked[0].Attempts != 1 {
		t.Fatalf("parked = %+v; want the rejected one (1 attempt) and the one held behind it", parked)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("handler called %d times, want 2 (the rejection is not retried)", n)
	}
	if s := r.Stats(); s.Failed != 1 || s.Executed != 2 {
		t.Fatalf("Stats = %+v", s)
	}
	out, err := r.Skip(ctxT(t), parked[0].Position, "ops", "customer over the limit, refunded by hand")
	if err != nil || len(out.Released) != 1 {
		t.Fatalf("Skip = %+v, %v", out, err)
	}
	got := e.caused(t, "w0")
	if len(got) != 1 || got[e.placed[1].ID]["Charged"] != 1 {
		t.Fatalf("w0 after the skip: %v, want the held order's charge only", got)
	}
}

// A handler that handles the rejection (here, noting it) keeps its stream
// flowing.
func TestRejectedHandled(t *testing.T) {
	e := newEnv(t)
	st := newStore()
	hs := []reactor.Handler[tx]{reactor.On(Orders, func(ctx context.Context, a *reactor.Act[tx], id string, ev Placed) error {
		_, err := reactor.Execute(ctx, a, Wallets, ev.Wallet, Charge{Amount: ev.Amount})
		if errors.Is(err, aggregate.ErrRejected) && errors.Is(err, errLimit) {
			_, err = reactor.Execute(ctx, a, Wallets, ev.Wallet, Note{Text: "declined " + id})
		}
		return err
	})}
	e.place(t, "o1", "w0", limit+1)
	e.place(t, "o1", "w0", 5)
	r := newReactor(t, e, st, hs)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, r, e)
	if p, _ := r.Admin().List(ctxT(t)); len(p) != 0 {
		t.Fatalf("parked: %+v", p)
	}
	got := e.caused(t, "w0")
	if got[e.placed[0].ID]["Noted"] != 1 || got[e.placed[1].ID]["Charged"] != 1 {
		t.Fatalf("w0: %v", got)
	}
}

// The same command twice to one entity for one event would be dropped by
// the entity as a repeat: the reactor refuses it, and the event is parked.
func TestDuplicateCommandRefused(t *testing.T) {
	e := newEnv(t)
	st := newStore()
	hs := []reactor.Handler[tx]{reactor.On(Orders, func(ctx context.Context, a *reactor.Act[tx], id string, ev Placed) error {
		for range 2 {
			if _, err := reactor.Execute(ctx, a, Wallets, ev.Wallet, Charge{Amount: ev.Amount}); err != nil {
				return err
			}
		}
		return nil
	})}
	e.place(t, "o1", "w0", 3)
	r := newReactor(t, e, st, hs)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, r, e)
	parked, err := r.Admin().List(ctxT(t))
	if err != nil || len(parked) != 1 || !strings.Contains(parked[0].Reason, "twice") {
		t.Fatalf("parked = %+v, %v; want the event, refused as a duplicate", parked, err)
	}
}

// A handler that fails (a bug) parks its event after MaxAttempts and holds
// its stream; once fixed, replaying it runs its commands and those of the
// held events, in stream order, each once.
func TestReplayAfterFix(t *testing.T) {
	e := newEnv(t)
	st := newStore()
	var fixed atomic.Bool
	hs := []reactor.Handler[tx]{reactor.On(Orders, func(ctx context.Context, a *reactor.Act[tx], id string, ev Placed) error {
		if ev.Amount == 13 && !fixed.Load() {
			return errors.New("bug: thirteen")
		}
		return chargeAndNote(ctx, a, id, ev)
	})}
	e.place(t, "o1", "w0", 1)
	e.place(t, "o1", "w0", 13)
	e.place(t, "o1", "w0", 2)
	e.place(t, "o2", "w1", 3)
	r := newReactor(t, e, st, hs)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, r, e)
	parked, _ := r.Admin().List(ctxT(t))
	if len(parked) != 2 || parked[0].Attempts != 3 {
		t.Fatalf("parked = %+v; want the failing event (3 attempts) and one held", parked)
	}
	fixed.Store(true)
	if _, err := r.Replay(ctxT(t), parked[0].Position, "dev", "fixed"); err != nil {
		t.Fatal(err)
	}
	e.wantOnce(t, "w0", "w1")
	// In the wallet, the charges follow the orders' order.
	var amounts []int64
	for ev, err := range e.client.ScanAll(ctxT(t), Wallets.StreamID("w0"), 0) {
		if err != nil {
			t.Fatal(err)
		}
		dec, _, err := Wallets.DecodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		amounts = append(amounts, dec.(Charged).Amount)
	}
	if fmt.Sprint(amounts) != "[1 13 2]" {
		t.Fatalf("w0 charges %v, want [1 13 2]", amounts)
	}
}

func TestConfigValidate(t *testing.T) {
	err := reactor.Config[tx]{}.Validate()
	for _, want := range []string{"Executor or a Bus", "Handlers are required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
	e := newEnv(t)
	err = reactor.Config[tx]{Name: "bad name", Client: e.client, Store: newStore(), Executor: e.exec,
		Handlers: []reactor.Handler[tx]{{}}}.Validate()
	if err == nil || !strings.Contains(err.Error(), "zero Handler") {
		t.Errorf("Validate() = %v, want the zero handler reported", err)
	}
	if _, err := reactor.New(reactor.Config[tx]{Name: "bad name", Client: e.client, Store: newStore(), Executor: e.exec,
		Handlers: []reactor.Handler[tx]{reactor.On(Orders, chargeAndNote)}}); !errors.Is(err, readmodel.ErrInvalidName) {
		t.Errorf("New with a bad name = %v, want ErrInvalidName", err)
	}
}
