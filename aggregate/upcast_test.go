package aggregate_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/internal/ledger"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

func ledgerType(t *testing.T, opts ...aggregate.Option[ledger.Ledger]) *aggregate.Type[ledger.Ledger, string] {
	t.Helper()
	typ, err := ledger.Type(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return typ
}

func ledgerGolden(t *testing.T) map[string][]byte {
	t.Helper()
	g, err := ledger.Golden()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// appendStored writes stored events to a stream as their writer did.
func appendStored(t *testing.T, srv *embedded.Server, stream string, evs []ledger.Stored) {
	t.Helper()
	news := make([]sierradb.NewEvent, len(evs))
	for i, e := range evs {
		news[i] = sierradb.NewEvent{StreamID: stream, Name: e.Name, ExpectedVersion: sierradb.ExpectAfter(int64(i) - 1), Payload: e.Payload, Metadata: e.Metadata}
	}
	if _, err := srv.AppendMulti(sierradb.StreamPartitionKey(stream), news...); err != nil {
		t.Fatal(err)
	}
}

// Old shapes stored by kameo_es and by older esmill load in their current
// shape: a typed chain (Opened v1 → v2 → v3), a rename (MoneyAdded →
// MoneyDeposited), an untyped upcaster (MoneyWithdrawn v1 → v2), and a
// field-less event stored as a bare name.
func TestUpcastGoldenHistories(t *testing.T) {
	g := ledgerGolden(t)
	srv := embedded.RunT(t)
	typ := ledgerType(t)
	ledgers := aggregate.Bind(newExec(t, newClient(t, srv.Addr()), aggregate.Config{}), typ)
	ctx := ctxT(t)
	for i, h := range ledger.Histories(g) {
		t.Run(h.Name, func(t *testing.T) {
			id := string(rune('a' + i))
			appendStored(t, srv, "ledger-"+id, h.Events)
			s, v, err := ledgers.Load(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if v != int64(len(h.Events)-1) || !reflect.DeepEqual(s, h.Want) {
				t.Fatalf("loaded %+v at version %d, want %+v", s, v, h.Want)
			}
			// DecodeEvent gives the current shapes too, with the
			// stored metadata.
			for _, ev := range srv.Stream("ledger-" + id) {
				e, m, err := typ.DecodeEvent(ev)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := typ.EncodeEvent(e); err != nil {
					t.Fatalf("%s decoded as %T, not a current event type: %v", ev.Name, e, err)
				}
				if ev.Name == "Opened" && m.SchemaVersion() != map[string]int{"kameo_es v1": 1, "esmill v2": 2, "esmill v3": 3}[h.Name] {
					t.Fatalf("stored schema version %d", m.SchemaVersion())
				}
			}
		})
	}
	// The renamed event decodes as the current type.
	e, _, err := typ.DecodeEvent(sierradb.Event{StreamID: "ledger-x", Name: "MoneyAdded", Payload: g["payload_money_added"]})
	if err != nil || e != (ledger.Deposited{Amount: 250}) {
		t.Fatalf("MoneyAdded decoded as %#v, %v", e, err)
	}
	names := typ.StoredEventNames()
	if !reflect.DeepEqual(names["MoneyAdded"], []string{"MoneyDeposited"}) || !reflect.DeepEqual(names["Opened"], []string{"Opened"}) {
		t.Fatalf("StoredEventNames = %v", names)
	}
}

// New events are written in their current shape, with the schema version
// in esmill's esv metadata key when it is above 1: exactly the bytes serde
// writes for the same shape and metadata.
func TestWritesCurrentSchemaVersion(t *testing.T) {
	g := ledgerGolden(t)
	srv := embedded.RunT(t)
	ledgers := aggregate.Bind(newExec(t, newClient(t, srv.Addr()), aggregate.Config{}), ledgerType(t))
	ctx := ctxT(t)
	// The command id is the golden metadata's.
	if _, err := ledgers.Execute(ctx, "w", ledger.Open{Holder: "alice", Currency: "USD", Overdraft: -500}, aggregate.WithCommandID("msg-1")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []aggregate.Command{ledger.Deposit{Amount: 100}, ledger.Freeze{}, ledger.Close{}} {
		if _, err := ledgers.Execute(ctx, "w", c); err != nil {
			t.Fatal(err)
		}
	}
	evs := srv.Stream("ledger-w")
	want := []struct{ name, payload, metadata string }{
		{"Opened", "payload_opened_v3", "metadata_esmill_v3"},
		{"MoneyDeposited", "payload_deposited", ""},
		{"Frozen", "payload_frozen", ""},
		{"Closed", "payload_closed", ""},
	}
	if len(evs) != len(want) {
		t.Fatalf("%d events", len(evs))
	}
	for i, w := range want {
		if evs[i].Name != w.name || !bytes.Equal(evs[i].Payload, g[w.payload]) {
			t.Errorf("event %d: %s %x, serde writes %s %x", i, evs[i].Name, evs[i].Payload, w.name, g[w.payload])
		}
		m, err := codec.DecodeMetadata(evs[i].Metadata)
		if err != nil {
			t.Fatal(err)
		}
		if w.metadata != "" && !bytes.Equal(evs[i].Metadata, g[w.metadata]) {
			t.Errorf("event %d: metadata %x, serde writes %x", i, evs[i].Metadata, g[w.metadata])
		}
		if w.metadata == "" && m.EventVersion != 0 {
			t.Errorf("event %d: a version 1 event stored with esv %d", i, m.EventVersion)
		}
	}
	// A transaction writes the version too.
	exec := newExec(t, newClient(t, srv.Addr()), aggregate.Config{})
	typ := ledgerType(t)
	_, err := exec.Transaction(ctx, typ.PartitionKey("t"), func(ctx context.Context, tx *aggregate.Tx) error {
		_, err := aggregate.In(tx, typ).Execute(ctx, "t", ledger.Open{Holder: "alice", Currency: "USD", Overdraft: -500}, aggregate.WithCommandID("msg-1"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if evs := srv.Stream("ledger-t"); len(evs) != 1 || !bytes.Equal(evs[0].Metadata, g["metadata_esmill_v3"]) {
		t.Fatalf("the transaction stored %+v", evs)
	}
}

// A stored event whose schema version is newer than the code's is a typed
// decode error that says to deploy the newer code.
func TestEventTooNew(t *testing.T) {
	g := ledgerGolden(t)
	srv := embedded.RunT(t)
	ledgers := aggregate.Bind(newExec(t, newClient(t, srv.Addr()), aggregate.Config{}), ledgerType(t))
	appendStored(t, srv, "ledger-new", []ledger.Stored{
		{Name: "MoneyDeposited", Payload: g["payload_deposited"], Metadata: nil},
		{Name: "Opened", Payload: g["payload_opened_v3"], Metadata: g["metadata_esmill_v4"]},
	})
	_, _, err := ledgers.Load(ctxT(t), "new")
	var de *aggregate.EventDecodeError
	var tn *aggregate.EventTooNewError
	if !errors.As(err, &de) || !errors.As(err, &tn) || !errors.Is(err, aggregate.ErrEventTooNew) || !errors.Is(err, aggregate.ErrEventDecode) {
		t.Fatalf("err = %v", err)
	}
	if de.StreamID != "ledger-new" || de.Version != 1 || de.Name != "Opened" || de.SchemaVersion != 4 || tn.Known != 3 {
		t.Fatalf("error names %+v, %+v", de, tn)
	}
	if !strings.Contains(err.Error(), "written by a newer version of the code; deploy it") {
		t.Fatalf("message: %v", err)
	}
	t.Log(err)
}

// An upcaster's error (and panic) is a typed decode error naming the
// stream, the stream version, the stored name and schema version, and the
// failing step of the chain.
func TestUpcastError(t *testing.T) {
	g := ledgerGolden(t)
	srv := embedded.RunT(t)
	panics := aggregate.Upcast[ledger.Ledger](func(boomV2) (ledger.Closed, error) { panic("kaboom") })
	ledgers := aggregate.Bind(newExec(t, newClient(t, srv.Addr()), aggregate.Config{}), ledgerType(t, panics))
	noCurrency, err := codec.EncodePayload(codec.CBOR, "Opened", ledger.OpenedV2{Owner: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	appendStored(t, srv, "ledger-bad", []ledger.Stored{
		{Name: "MoneyDeposited", Payload: g["payload_deposited"], Metadata: nil},
		{Name: "Opened", Payload: noCurrency, Metadata: g["metadata_esmill_v2"]},
	})
	_, _, err = ledgers.Load(ctxT(t), "bad")
	var de *aggregate.EventDecodeError
	var ue *aggregate.UpcastError
	if !errors.As(err, &de) || !errors.As(err, &ue) || !errors.Is(err, aggregate.ErrUpcast) || !errors.Is(err, aggregate.ErrEventDecode) || !errors.Is(err, ledger.ErrNoCurrency) {
		t.Fatalf("err = %v", err)
	}
	if de.StreamID != "ledger-bad" || de.Version != 1 || de.Name != "Opened" || de.SchemaVersion != 2 ||
		ue.From != (aggregate.EventSchema{Name: "Opened", Version: 2}) || ue.To != (aggregate.EventSchema{Name: "Opened", Version: 3}) {
		t.Fatalf("error names %+v, %+v", de, ue)
	}
	t.Log(err)
	// A panicking upcaster is contained.
	typ := ledgerType(t, panics)
	payload, _ := codec.EncodePayload(codec.CBOR, "Boom", boomV2{})
	_, _, err = typ.DecodeEvent(sierradb.Event{StreamID: "ledger-p", Name: "Boom", Payload: payload, Metadata: g["metadata_esmill_v2"]})
	if !errors.As(err, &ue) || !errors.Is(err, aggregate.ErrPanic) || !errors.Is(err, aggregate.ErrEventDecode) {
		t.Fatalf("a panicking upcaster: %v", err)
	}
	// A version without upcaster, and an unknown name.
	_, _, err = ledgerType(t).DecodeEvent(sierradb.Event{StreamID: "ledger-n", Name: "Frozen", Payload: g["payload_frozen"], Metadata: g["metadata_esmill_v2"]})
	if !errors.Is(err, aggregate.ErrEventTooNew) {
		t.Fatalf("Frozen v2: %v", err)
	}
	_, _, err = ledgerType(t).DecodeEvent(sierradb.Event{StreamID: "ledger-n", Name: "Nope", Payload: g["payload_frozen"]})
	if !errors.Is(err, aggregate.ErrUnknownEvent) || !errors.Is(err, aggregate.ErrEventDecode) {
		t.Fatalf("an unknown name: %v", err)
	}
}

// boomV2 is an old shape whose upcaster panics.
type boomV2 struct{}

func (boomV2) EventName() string { return "Boom" }
func (boomV2) EventVersion() int { return 2 }

// An old shape missing from a chain: the type knows Opened v3 and an
// upcaster from v2, and a v1 event is stored.
func TestMissingUpcaster(t *testing.T) {
	g := ledgerGolden(t)
	typ, err := aggregate.Define[ledger.Ledger, string]("ledger", append(ledger.Events(), ledger.Upcasters()[1])...)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = typ.DecodeEvent(sierradb.Event{StreamID: "ledger-m", Name: "Opened", Payload: g["payload_opened"]})
	if !errors.Is(err, aggregate.ErrUnknownEvent) || !errors.Is(err, aggregate.ErrEventDecode) || !strings.Contains(err.Error(), "no upcaster reads Opened v1") {
		t.Fatalf("err = %v", err)
	}
}

// Define refuses upcasters that cannot work, naming each problem.
func TestDefineRejectsBadUpcasters(t *testing.T) {
	type L = ledger.Ledger
	s := func(n string, v int) aggregate.EventSchema { return aggregate.EventSchema{Name: n, Version: v} }
	for _, tt := range []struct {
		name string
		opt  aggregate.Option[L]
		want string
	}{
		{"from a current shape", aggregate.Rename[L](s("Frozen", 1), s("Closed", 1)), "is the current shape"},
		{"twice from one shape", aggregate.Rename[L](s("Opened", 1), s("Opened", 3)), "two upcasters read Opened v1"},
		{"to nowhere", aggregate.Rename[L](s("Gone", 1), s("Vanished", 1)), "lead to Vanished v1"},
		{"version 0", aggregate.Rename[L](s("Old", 0), s("Frozen", 1)), "schema versions start at 1"},
		{"no change", aggregate.Rename[L](s("Old", 1), s("Old", 1)), "must change the name or the version"},
		{"nil function", aggregate.UpcastFields[L](s("Old", 1), s("Frozen", 1), nil), "nil function"},
		{"interface", aggregate.Upcast[L](func(e aggregate.Event) (ledger.Frozen, error) { return ledger.Frozen{}, nil }), "concrete event types"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ledger.Type(tt.opt)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to say %q", err, tt.want)
			}
		})
	}
	// A circle.
	_, err := aggregate.Define[L, string]("ledger", append(ledger.Events(),
		aggregate.Rename[L](s("A", 1), s("B", 1)), aggregate.Rename[L](s("B", 1), s("A", 1)))...)
	if err == nil || !strings.Contains(err.Error(), "circle") {
		t.Fatalf("a circle: %v", err)
	}
	// An event version below 1.
	_, err = aggregate.Define[L, string]("ledger", aggregate.On(func(*L, badVersion) {}))
	if err == nil || !strings.Contains(err.Error(), "EventVersion 0") {
		t.Fatalf("version 0: %v", err)
	}
}

type badVersion struct{}

func (badVersion) EventName() string { return "Bad" }
func (badVersion) EventVersion() int { return 0 }

// Decide (and so aggregatetest) applies given events of old shapes in
// their current shape.
func TestDecideUpcastsGivenEvents(t *testing.T) {
	typ := ledgerType(t)
	d, err := typ.Decide([]aggregate.GivenEvent{{Event: ledger.OpenedV1{Owner: "alice"}}}, ledger.Withdraw{Amount: 1, Reason: "fee"})
	if err != nil || d.Version != 0 || len(d.Events) != 1 {
		t.Fatalf("%+v %v", d, err)
	}
	if _, err := typ.Decide([]aggregate.GivenEvent{{Event: ledger.OpenedV2{Owner: "bob"}}}, ledger.Freeze{}); !errors.Is(err, ledger.ErrNoCurrency) {
		t.Fatalf("a failing upcast in Decide: %v", err)
	}
}

// UpcastStored rewrites a stored event into its current stored form, for
// consumers of raw events (the Pub/Sub adapter), and passes everything
// else through untouched.
func TestUpcastStored(t *testing.T) {
	g := ledgerGolden(t)
	typ := ledgerType(t)
	ev := sierradb.Event{StreamID: "ledger-a", StreamVersion: 3, Name: "Opened", Payload: g["payload_opened_v2"], Metadata: g["metadata_esmill_v2"]}
	got, err := typ.UpcastStored(ev)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := codec.EncodePayload(codec.CBOR, "Opened", ledger.Opened{Holder: "alice", Currency: "USD"})
	m, err := codec.DecodeMetadata(got.Metadata)
	if err != nil || got.Name != "Opened" || !bytes.Equal(got.Payload, want) || m.EventVersion != 3 || m.Command != "Open" || m.CommandID != "msg-1" || got.StreamVersion != 3 {
		t.Fatalf("upcast to %+v (%+v, %v)", got, m, err)
	}
	got, err = typ.UpcastStored(sierradb.Event{StreamID: "ledger-a", Name: "MoneyAdded", Payload: g["payload_money_added"]})
	want, _ = codec.EncodePayload(codec.CBOR, "MoneyDeposited", ledger.Deposited{Amount: 250})
	if err != nil || got.Name != "MoneyDeposited" || !bytes.Equal(got.Payload, want) || len(got.Metadata) != 0 {
		t.Fatalf("renamed to %+v, %v", got, err)
	}
	for _, ev := range []sierradb.Event{
		{StreamID: "ledger-a", Name: "Opened", Payload: g["payload_opened_v3"], Metadata: g["metadata_esmill_v3"]}, // current
		{StreamID: "other-a", Name: "Opened", Payload: g["payload_opened"]},                                        // another category
		{StreamID: "ledger:snapshot-a", Name: "Opened", Payload: g["payload_opened"]},                              // a snapshot
		{StreamID: "ledger-a", Name: "Unknown", Payload: []byte{0xff}},                                             // not the type's
	} {
		got, err := typ.UpcastStored(ev)
		if err != nil || !reflect.DeepEqual(got, ev) {
			t.Errorf("%s %s changed into %+v, %v", ev.StreamID, ev.Name, got, err)
		}
	}
	if _, err := typ.UpcastStored(sierradb.Event{StreamID: "ledger-a", Name: "Opened", Payload: g["payload_opened_v3"], Metadata: g["metadata_esmill_v4"]}); !errors.Is(err, aggregate.ErrEventTooNew) {
		t.Fatalf("too new: %v", err)
	}
}

// Upcasters work the same on JSON payloads: JSON numbers reach
// UpcastFields as json.Number and decode into the current type.
func TestUpcastJSON(t *testing.T) {
	typ := ledgerType(t, aggregate.WithFormat[ledger.Ledger](codec.JSON))
	for _, tt := range []struct {
		name, payload string
		want          aggregate.Event
	}{
		{"Opened", `{"Opened":{"owner":"alice"}}`, ledger.Opened{Holder: "alice", Currency: ledger.DefaultCurrency}},
		{"MoneyAdded", `{"MoneyAdded":{"amount":7}}`, ledger.Deposited{Amount: 7}},
		{"MoneyWithdrawn", `{"MoneyWithdrawn":{"amount":18446744073709551615}}`, ledger.Withdrawn{Amount: 18446744073709551615, Reason: "unknown"}},
		{"Frozen", `"Frozen"`, ledger.Frozen{}},
		{"Closed", `{"Closed":{}}`, ledger.Closed{}},
	} {
		e, _, err := typ.DecodeEvent(sierradb.Event{StreamID: "ledger-j", Name: tt.name, Payload: []byte(tt.payload)})
		if err != nil || e != tt.want {
			t.Errorf("%s decoded as %#v, %v; want %#v", tt.payload, e, err, tt.want)
		}
	}
}

// Whatever is stored, DecodeEvent through upcasters returns a current
// event or an *EventDecodeError: never a panic, never an old shape.
func FuzzDecodeEvent(f *testing.F) {
	g, err := ledger.Golden()
	if err != nil {
		f.Fatal(err)
	}
	for _, h := range ledger.Histories(g) {
		for _, e := range h.Events {
			f.Add(e.Name, e.Payload, e.Metadata)
		}
	}
	f.Add("Opened", g["payload_opened_v3"], g["metadata_esmill_v4"])
	typ, err := ledger.Type()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name string, payload, metadata []byte) {
		e, _, err := typ.DecodeEvent(sierradb.Event{StreamID: "ledger-f", Name: name, Payload: payload, Metadata: metadata})
		if err != nil {
			var de *aggregate.EventDecodeError
			if !errors.As(err, &de) {
				t.Fatalf("%v is not an *EventDecodeError", err)
			}
			return
		}
		if _, _, err := typ.EncodeEvent(e); err != nil {
			t.Fatalf("decoded %T, not a current event: %v", e, err)
		}
	})
}

// A rename can start a chain: the payload, still under its old name, is
// read by the typed and untyped upcasters that follow.
func TestRenameStartsChain(t *testing.T) {
	s := func(n string, v int) aggregate.EventSchema { return aggregate.EventSchema{Name: n, Version: v} }
	typ := ledgerType(t,
		aggregate.Rename[ledger.Ledger](s("Created", 1), s("Opened", 1)),
		aggregate.Rename[ledger.Ledger](s("MoneyTaken", 1), s("MoneyWithdrawn", 1)))
	created, _ := codec.EncodePayload(codec.CBOR, "Created", ledger.OpenedV1{Owner: "zed"})
	taken, _ := codec.EncodePayload(codec.CBOR, "MoneyTaken", ledger.Deposited{Amount: 9})
	for _, tt := range []struct {
		name    string
		payload []byte
		want    aggregate.Event
	}{
		{"Created", created, ledger.Opened{Holder: "zed", Currency: ledger.DefaultCurrency}},
		{"MoneyTaken", taken, ledger.Withdrawn{Amount: 9, Reason: "unknown"}},
	} {
		e, _, err := typ.DecodeEvent(sierradb.Event{StreamID: "ledger-r", Name: tt.name, Payload: tt.payload})
		if err != nil || e != tt.want {
			t.Errorf("%s decoded as %#v, %v; want %#v", tt.name, e, err, tt.want)
		}
	}
	if got := typ.StoredEventNames()["Created"]; !reflect.DeepEqual(got, []string{"Opened"}) {
		t.Errorf("Created is read as %v", got)
	}
}
