package readmodel_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/lease"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/memory"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

type tx = *memory.Tx[Balances]

func newStore() *memory.Store[Balances] {
	return memory.New(memory.Config[Balances]{New: func() Balances { return Balances{} }, Clone: maps.Clone[Balances]})
}

func credit(ctx context.Context, tx tx, id string, e Credited, m readmodel.Meta) error {
	(*tx.Model())[id] += e.Amount
	return nil
}

func TestCategory(t *testing.T) {
	for _, tc := range []struct{ stream, want string }{
		{"wallet-1", "wallet"},
		{"wallet-a-b", "wallet"},
		{"wallet:snapshot-1", "wallet:snapshot"},
		{"nodash", "nodash"},
	} {
		if got := readmodel.Category(tc.stream); got != tc.want {
			t.Errorf("Category(%q) = %q, want %q", tc.stream, got, tc.want)
		}
	}
}

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"balances", true}, {"balances@v2", true}, {"a_b-c", true}, {"9x", true},
		{"", false}, {"a.b", false}, {"a/b", false}, {"@x", false}, {strings.Repeat("x", 101), false},
	} {
		err := readmodel.ValidateName(tc.name)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, readmodel.ErrInvalidName)) {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

type Unregistered struct{}

func (Unregistered) EventName() string { return "Unregistered" }

func TestConfigValidate(t *testing.T) {
	client, err := sierradb.New(sierradb.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	good := func() readmodel.Config[tx] {
		return readmodel.Config[tx]{Name: "p", Client: client, Store: newStore(),
			Handlers: []readmodel.Handler[tx]{readmodel.On(Wallets, credit)}}
	}
	for _, tc := range []struct {
		name string
		mod  func(*readmodel.Config[tx])
		want string
	}{
		{"valid", func(*readmodel.Config[tx]) {}, ""},
		{"no name", func(c *readmodel.Config[tx]) { c.Name = "" }, "projection name"},
		{"no client", func(c *readmodel.Config[tx]) { c.Client = nil }, "Client"},
		{"no store", func(c *readmodel.Config[tx]) { c.Store = nil }, "Store"},
		{"no handlers", func(c *readmodel.Config[tx]) { c.Handlers = nil }, "Handlers"},
		{"window below batch", func(c *readmodel.Config[tx]) { c.BatchSize, c.Window = 100, 10 }, "Window"},
		{"negative batch", func(c *readmodel.Config[tx]) { c.BatchSize = -1 }, "BatchSize"},
		{"bad policy", func(c *readmodel.Config[tx]) { c.OnPoison = 7 }, "OnPoison"},
		{"bad divergence policy", func(c *readmodel.Config[tx]) { c.OnDiverged = 7 }, "OnDiverged"},
		{"negative confirm wait", func(c *readmodel.Config[tx]) { c.ConfirmWait = -time.Second }, "ConfirmWait must not be negative"},
		{"group without leases", func(c *readmodel.Config[tx]) { c.Group = "g" }, "need Leases"},
		{"bad instance", func(c *readmodel.Config[tx]) { c.Leases, c.Instance = lease.NewMemoryStore(), "a b" }, "instance name"},
		{"short lease", func(c *readmodel.Config[tx]) { c.Leases, c.LeaseTTL = lease.NewMemoryStore(), time.Millisecond }, "LeaseTTL"},
		{"unregistered event", func(c *readmodel.Config[tx]) {
			c.Handlers = append(c.Handlers, readmodel.On(Wallets, func(context.Context, tx, string, Unregistered, readmodel.Meta) error { return nil }))
		}, "Unregistered"},
		{"zero handler", func(c *readmodel.Config[tx]) { c.Handlers = []readmodel.Handler[tx]{{}} }, "zero Handler"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.mod(&c)
			_, err := readmodel.New(c)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("New = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error about %s", err, tc.want)
			}
		})
	}
}

func TestCloseBeforeStart(t *testing.T) {
	client, _ := sierradb.New(sierradb.Config{})
	defer client.Close()
	r, err := readmodel.New(readmodel.Config[tx]{Name: "p", Client: client, Store: newStore(),
		Handlers: []readmodel.Handler[tx]{readmodel.On(Wallets, credit)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); !errors.Is(err, readmodel.ErrClosed) {
		t.Fatalf("Start after Close = %v, want ErrClosed", err)
	}
	if err := r.Sync(context.Background()); !errors.Is(err, readmodel.ErrClosed) {
		t.Fatalf("Sync after Close = %v, want ErrClosed", err)
	}
}

// fixture appends wallet events and returns a client.
func fixture(t *testing.T, evs ...sierradb.NewEvent) *sierradb.Client {
	t.Helper()
	srv := embedded.RunT(t)
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	versions := map[string]int64{}
	for _, ev := range evs {
		v, ok := versions[ev.StreamID]
		if !ok {
			v = -1
		}
		ev.ExpectedVersion = sierradb.ExpectAfter(v)
		if _, err := client.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		versions[ev.StreamID] = v + 1
	}
	return client
}

func credited(t *testing.T, stream string, amount int64) sierradb.NewEvent {
	t.Helper()
	name, payload, err := Wallets.EncodeEvent(Credited{Amount: amount})
	if err != nil {
		t.Fatal(err)
	}
	return sierradb.NewEvent{StreamID: stream, Name: name, Payload: payload}
}

func run(t *testing.T, client *sierradb.Client, st *memory.Store[Balances], mod func(*readmodel.Config[tx]), hs ...readmodel.Handler[tx]) *readmodel.Runner[tx] {
	t.Helper()
	c := readmodel.Config[tx]{Name: "p", Client: client, Store: st, Handlers: hs, MaxAttempts: 3,
		RetryBackoff: time.Millisecond, MaxRetryBackoff: time.Millisecond, BatchTimeout: time.Millisecond}
	if mod != nil {
		mod(&c)
	}
	r, err := readmodel.New(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestHandlerErrors(t *testing.T) {
	client := fixture(t, credited(t, "wallet-panics", 1), credited(t, "wallet-permanent", 2),
		credited(t, "wallet-transient", 3), credited(t, "wallet-ok", 4))
	var transient atomic.Int64
	st := newStore()
	r := run(t, client, st, nil, readmodel.On(Wallets, func(ctx context.Context, tx tx, id string, e Credited, m readmodel.Meta) error {
		switch id {
		case "panics":
			panic("boom")
		case "permanent":
			return esmill.MarkPoison(errors.New("cannot ever work"))
		case "transient":
			// More failures than MaxAttempts: never parked.
			if transient.Add(1) <= 6 {
				return esmill.MarkTransient(errors.New("database away"))
			}
		}
		return credit(ctx, tx, id, e, m)
	}))
	parked, err := st.Parked(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]readmodel.ParkedEvent{}
	for _, p := range parked {
		got[p.StreamID] = p
	}
	if p := got["wallet-panics"]; p.Cause != readmodel.CauseHandler || p.Attempts != 1 || !strings.Contains(p.Reason, "panic: boom") {
		t.Errorf("panicking event parked as %+v", p)
	}
	if p := got["wallet-permanent"]; p.Attempts != 1 || !strings.Contains(p.Reason, "cannot ever work") {
		t.Errorf("permanent failure parked as %+v", p)
	}
	if len(got) != 2 {
		t.Errorf("parked %v, want two", got)
	}
	st.Read("p", func(b Balances) {
		if b["transient"] != 3 || b["ok"] != 4 || b["panics"] != 0 {
			t.Errorf("balances = %v", b)
		}
	})
	if s := r.Status(); s.Parked != 2 || s.Handled != 4 {
		t.Errorf("status = %+v", s)
	}
}

func TestOnOtherAndOnAll(t *testing.T) {
	client := fixture(t, credited(t, "wallet-a", 1), sierradb.NewEvent{StreamID: "other-x", Name: "Thing", Payload: []byte("raw")},
		credited(t, "wallet:snapshot-a", 9))
	st := newStore()
	var others []string
	var all []string
	run(t, client, st, nil,
		readmodel.OnAll(Wallets, func(ctx context.Context, tx tx, id string, e aggregate.Event, m readmodel.Meta) error {
			all = append(all, id+":"+e.EventName())
			return nil
		}),
		readmodel.OnOther(func(ctx context.Context, tx tx, ev sierradb.Event, m readmodel.Meta) error {
			others = append(others, ev.StreamID)
			return nil
		}))
	if strings.Join(all, ",") != "a:Credited" {
		t.Errorf("OnAll saw %v", all)
	}
	// The snapshot stream's category is "wallet:snapshot": not a wallet.
	if strings.Join(others, ",") != "other-x,wallet:snapshot-a" && strings.Join(others, ",") != "wallet:snapshot-a,other-x" {
		t.Errorf("OnOther saw %v", others)
	}
}

// A runner whose subscription ends says so once, with the cause and what to
// do, under one prefix.
func TestSubscriptionEndedError(t *testing.T) {
	client := fixture(t, credited(t, "wallet-a", 1))
	st := newStore()
	r := run(t, client, st, nil, readmodel.On(Wallets, credit))
	client.Close()
	select {
	case <-r.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the runner did not stop when its client closed")
	}
	err := r.Err()
	var se *readmodel.SubscriptionEndedError
	if !errors.Is(err, readmodel.ErrSubscriptionEnded) || !errors.As(err, &se) || se.Projection != "p" {
		t.Fatalf("%v", err)
	}
	if msg := err.Error(); strings.Count(msg, "readmodel:") != 1 || !strings.Contains(msg, "resumes from its checkpoints") {
		t.Fatalf("message %q", msg)
	}
}
