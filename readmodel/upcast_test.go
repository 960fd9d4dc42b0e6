package readmodel_test

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/internal/ledger"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/memory"
	"github.com/esmill/esmill/sierradb"
)

// holders is a read model of ledgers: one line per ledger and event.
type holders map[string][]string

type htx = *memory.Tx[holders]

// A projection sees events in their current shape: old shapes stored by
// kameo_es and older esmill are upcast, a renamed event reaches the
// handler of its current type, and an upcaster's error parks the event as
// a decode error (poison) without stopping the others.
func TestProjectionSeesCurrentShapes(t *testing.T) {
	g, err := ledger.Golden()
	if err != nil {
		t.Fatal(err)
	}
	typ, err := ledger.Type()
	if err != nil {
		t.Fatal(err)
	}
	var evs []sierradb.NewEvent
	for i, h := range ledger.Histories(g) {
		for _, e := range h.Events {
			evs = append(evs, sierradb.NewEvent{StreamID: "ledger-" + string(rune('a'+i)), Name: e.Name, Payload: e.Payload, Metadata: e.Metadata})
		}
	}
	noCurrency, err := codec.EncodePayload(codec.CBOR, "Opened", ledger.OpenedV2{Owner: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	evs = append(evs,
		sierradb.NewEvent{StreamID: "ledger-bad", Name: "Opened", Payload: noCurrency, Metadata: g["metadata_esmill_v2"]},
		sierradb.NewEvent{StreamID: "ledger-new", Name: "Opened", Payload: g["payload_opened_v3"], Metadata: g["metadata_esmill_v4"]})
	client := fixture(t, evs...)

	st := memory.New(memory.Config[holders]{New: func() holders { return holders{} }, Clone: maps.Clone[holders]})
	add := func(tx htx, id, line string) { (*tx.Model())[id] = append((*tx.Model())[id], line) }
	c := readmodel.Config[htx]{Name: "holders", Client: client, Store: st, Handlers: []readmodel.Handler[htx]{
		readmodel.On(typ, func(_ context.Context, tx htx, id string, e ledger.Opened, _ readmodel.Meta) error {
			add(tx, id, e.Holder+" "+e.Currency)
			return nil
		}),
		// Only the current name has a handler: the renamed MoneyAdded
		// reaches it.
		readmodel.On(typ, func(_ context.Context, tx htx, id string, e ledger.Deposited, m readmodel.Meta) error {
			add(tx, id, "deposit "+m.Name)
			return nil
		}),
		readmodel.On(typ, func(_ context.Context, tx htx, id string, e ledger.Withdrawn, _ readmodel.Meta) error {
			add(tx, id, "withdraw "+e.Reason)
			return nil
		}),
	}}
	r, err := readmodel.New(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if err := r.Sync(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	st.Read("holders", func(h holders) {
		want := holders{
			"a": {"alice EUR", "deposit MoneyAdded", "withdraw unknown"},
			"b": {"alice USD", "deposit MoneyDeposited"},
			"c": {"alice USD"},
		}
		if !reflect.DeepEqual(h, want) {
			t.Errorf("read model %v, want %v", h, want)
		}
	})
	parked, err := st.Parked(context.Background(), "holders")
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 2 {
		t.Fatalf("parked %+v, want the two events that do not decode", parked)
	}
	for _, p := range parked {
		if p.Cause != readmodel.CauseDecode {
			t.Errorf("%s parked as %s", p.StreamID, p.Cause)
		}
		want := map[string]string{"ledger-bad": "Opened v2 without a currency", "ledger-new": "written by a newer version of the code; deploy it"}[p.StreamID]
		if want == "" || !strings.Contains(p.Reason, want) || !strings.Contains(p.Reason, p.StreamID) {
			t.Errorf("%s parked for %q", p.StreamID, p.Reason)
		}
	}
	// Everything is decoded the way an executor would.
	if _, _, err := typ.DecodeEvent(sierradb.Event{StreamID: "ledger-bad", Name: "Opened", Payload: noCurrency, Metadata: g["metadata_esmill_v2"]}); !errors.Is(err, aggregate.ErrUpcast) {
		t.Fatalf("DecodeEvent = %v", err)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}
