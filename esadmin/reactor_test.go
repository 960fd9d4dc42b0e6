package esadmin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/esadmin"
	"github.com/esmill/esmill/reactor"
	"github.com/esmill/esmill/readmodel/memory"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

type placed struct {
	Amount int64 `cbor:"amount"`
}

func (placed) EventName() string { return "Placed" }

type place struct{ Amount int64 }

func (place) CommandName() string { return "Place" }

type charged struct {
	Amount int64 `cbor:"amount"`
}

func (charged) EventName() string { return "Charged" }

type charge struct{ Amount int64 }

func (charge) CommandName() string { return "Charge" }

var (
	orders = aggregate.MustDefine[struct{}, string]("order",
		aggregate.On(func(*struct{}, placed) {}),
		aggregate.Handle(func(_ struct{}, c place, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
			return aggregate.Events(placed(c)), nil
		}))
	wallets = aggregate.MustDefine[int64, string]("wallet",
		aggregate.On(func(s *int64, e charged) { *s += e.Amount }),
		aggregate.Handle(func(_ int64, c charge, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
			return aggregate.Events(charged(c)), nil
		}))
)

// A registered reactor (esadmin.Reactor): status shows it as a reactor
// with its parked event, and parked replay runs the fixed handler, whose
// command is executed once.
func TestReactorReplay(t *testing.T) {
	ctx := t.Context()
	srv, err := embedded.Run()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	exec, err := aggregate.NewExecutor(client, aggregate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Close()
	type tx = *memory.Tx[struct{}]
	store := memory.New(memory.Config[struct{}]{})
	var broken atomic.Bool
	broken.Store(true)
	cfg := reactor.Config[tx]{Name: "charges", Client: client, Store: store, Executor: exec,
		Handlers: []reactor.Handler[tx]{
			reactor.On(orders, func(ctx context.Context, a *reactor.Act[tx], id string, e placed) error {
				if broken.Load() {
					return esmill.MarkPoison(errors.New("charges: broken"))
				}
				_, err := reactor.Execute(ctx, a, wallets, "w-"+id, charge(e))
				return err
			}),
		}}
	r, err := reactor.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := aggregate.Bind(exec, orders).Execute(ctx, "1", place{Amount: 30}); err != nil {
		t.Fatal(err)
	}
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	r.Close()
	evs, err := store.Parked(ctx, "charges")
	if err != nil || len(evs) != 1 {
		t.Fatalf("parked %v, %v", evs, err)
	}
	broken.Store(false)

	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		app := &esadmin.App{Stdout: &out, Stderr: &errb, Targets: []esadmin.Target{esadmin.Reactor(cfg)},
			Getenv: func(k string) string {
				if k == esadmin.EnvSierraDB {
					return srv.Addr()
				}
				return ""
			}}
		if err := app.Run(ctx, args); err != nil {
			t.Fatalf("%v: %v; stderr %s", args, err, errb.String())
		}
		return out.String()
	}
	var st esadmin.Status
	if err := json.Unmarshal([]byte(run("status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Targets) != 1 || st.Targets[0].Kind != esadmin.KindReactor || st.Targets[0].Parked != 1 || st.Targets[0].Lag != 0 {
		t.Fatalf("status %+v", st)
	}
	out := run("parked", "replay", "--projection", "charges", evs[0].Position.String())
	if !strings.Contains(out, "charges replayed "+evs[0].Position.String()) {
		t.Fatalf("replay printed %q", out)
	}
	var wallet []sierradb.Event
	for ev, err := range client.ScanAll(ctx, "wallet-w-1", 0) {
		if err != nil {
			t.Fatal(err)
		}
		wallet = append(wallet, ev)
	}
	if len(wallet) != 1 || wallet[0].Name != "Charged" {
		t.Fatalf("wallet-w-1 holds %d events, want one charge", len(wallet))
	}
	if left, err := store.Parked(ctx, "charges"); err != nil || len(left) != 0 {
		t.Fatalf("parked after the replay: %v, %v", left, err)
	}
}
