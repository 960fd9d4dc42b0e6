package reactor_test

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/memory"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

// The test domain: orders (the source) cause charges and notes on wallets
// (the targets).
type order struct{}

type Placed struct {
	Wallet string `cbor:"wallet"`
	Amount int64  `cbor:"amount"`
}

func (Placed) EventName() string { return "Placed" }

type Place struct {
	Wallet string
	Amount int64
}

func (Place) CommandName() string { return "Place" }

var Orders = aggregate.MustDefine[order, string]("rorder",
	aggregate.On(func(*order, Placed) {}),
	aggregate.Handle(func(_ order, c Place, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		return aggregate.Events(Placed(c)), nil
	}),
)

type wallet struct{ Balance int64 }

type Charged struct {
	Amount int64 `cbor:"amount"`
}

func (Charged) EventName() string { return "Charged" }

type Noted struct {
	Text string `cbor:"text"`
}

func (Noted) EventName() string { return "Noted" }

type Charge struct{ Amount int64 }

func (Charge) CommandName() string { return "Charge" }

type Note struct{ Text string }

func (Note) CommandName() string { return "Note" }

// errLimit rejects charges above the limit.
var errLimit = errors.New("over the limit")

const limit = 1000

var Wallets = aggregate.MustDefine[wallet, string]("rwallet",
	aggregate.On(func(w *wallet, e Charged) { w.Balance -= e.Amount }),
	aggregate.On(func(*wallet, Noted) {}),
	aggregate.Handle(func(_ wallet, c Charge, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		if c.Amount > limit {
			return nil, errLimit
		}
		return aggregate.Events(Charged(c)), nil
	}),
	aggregate.Handle(func(_ wallet, c Note, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		return aggregate.Events(Noted(c)), nil
	}),
)

type tx = *memory.Tx[struct{}]

func newStore() *memory.Store[struct{}] { return memory.New(memory.Config[struct{}]{}) }

type env struct {
	client *sierradb.Client
	exec   *aggregate.Executor
	orders *aggregate.Entities[order, string]
	// placed are the positions of the placed orders.
	placed []sierradb.Event
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := embedded.RunT(t)
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	exec, err := aggregate.NewExecutor(client, aggregate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Close() })
	return &env{client: client, exec: exec, orders: aggregate.Bind(exec, Orders)}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// place places an order.
func (e *env) place(t testing.TB, order, wallet string, amount int64) {
	t.Helper()
	res, err := e.orders.Execute(ctxT(t), order, Place{Wallet: wallet, Amount: amount})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range res.Events {
		e.placed = append(e.placed, sierradb.Event{ID: a.ID, StreamID: res.StreamID, PartitionID: a.PartitionID, PartitionSequence: a.PartitionSequence})
	}
}

// positions returns where the placed orders are.
func (e *env) positions() []readmodel.Position {
	out := make([]readmodel.Position, len(e.placed))
	for i, p := range e.placed {
		out[i] = readmodel.Position{Partition: p.PartitionID, Sequence: p.PartitionSequence}
	}
	return out
}

// caused counts, per causing event, the events of a wallet's stream by
// name.
func (e *env) caused(t testing.TB, walletID string) map[uuid.UUID]map[string]int {
	t.Helper()
	out := make(map[uuid.UUID]map[string]int)
	for ev, err := range e.client.ScanAll(ctxT(t), Wallets.StreamID(walletID), 0) {
		if err != nil {
			t.Fatal(err)
		}
		m, err := codec.DecodeMetadata(ev.Metadata)
		if err != nil || m.Causation == nil {
			t.Fatalf("event %s v%d without causation: %+v, %v", ev.StreamID, ev.StreamVersion, m, err)
		}
		if out[m.Causation.EventID] == nil {
			out[m.Causation.EventID] = make(map[string]int)
		}
		out[m.Causation.EventID][ev.Name]++
	}
	return out
}

func cloneCounts(m map[uuid.UUID]map[string]int) map[uuid.UUID]map[string]int {
	out := make(map[uuid.UUID]map[string]int, len(m))
	for k, v := range m {
		out[k] = maps.Clone(v)
	}
	return out
}
