package codec_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/internal/golden"
)

type Opened struct {
	Owner string `cbor:"owner" json:"owner"`
}
type MoneyDeposited struct {
	Amount uint32 `cbor:"amount" json:"amount"`
}
type Closed struct{ codec.Unit }
type Frozen struct{}

type Tenant struct {
	Tenant string `cbor:"tenant"`
	UserID uint64 `cbor:"user_id"`
}

var causation = &codec.Causation{
	EventID:       uuid.MustParse("01a22828-aa2f-1837-be1f-60b713af75d4"),
	StreamID:      "transfer-t1",
	StreamVersion: 7,
}

func TestPayloadMatchesKameo(t *testing.T) {
	g := golden.Kameo(t)
	tests := []struct {
		golden string
		name   string
		v      any
	}{
		{"payload_opened", "Opened", Opened{Owner: "alice"}},
		{"payload_deposited", "MoneyDeposited", MoneyDeposited{Amount: 100}},
		{"payload_withdrawn", "MoneyWithdrawn", MoneyDeposited{Amount: 4294967295}},
		{"payload_closed", "Closed", Closed{}},
		{"payload_frozen", "Frozen", Frozen{}},
		{"payload_frozen", "Frozen", &Frozen{}},
		{"payload_closed", "Closed", &Closed{}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			b, err := codec.EncodePayload(codec.CBOR, tt.name, tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, g[tt.golden]) {
				t.Fatalf("esmill wrote %x, kameo_es writes %x", b, g[tt.golden])
			}
			name, err := codec.PayloadName(codec.CBOR, g[tt.golden])
			if err != nil || name != tt.name {
				t.Fatalf("PayloadName = %q, %v", name, err)
			}
		})
	}
	var d MoneyDeposited
	if err := codec.DecodePayload(codec.CBOR, g["payload_withdrawn"], "MoneyWithdrawn", &d); err != nil || d.Amount != 4294967295 {
		t.Fatalf("decoded %+v, %v", d, err)
	}
	var o Opened
	if err := codec.DecodePayload(codec.CBOR, g["payload_opened"], "Opened", &o); err != nil || o.Owner != "alice" {
		t.Fatalf("decoded %+v, %v", o, err)
	}
	if err := codec.DecodePayload(codec.CBOR, g["payload_closed"], "Closed", &Closed{}); err != nil {
		t.Fatal(err)
	}
	if err := codec.DecodePayload(codec.CBOR, g["payload_opened"], "Closed", &Closed{}); !errors.Is(err, codec.ErrInvalidPayload) {
		t.Fatalf("a payload of another variant: %v", err)
	}
}

func TestMetadataMatchesKameo(t *testing.T) {
	g := golden.Kameo(t)
	data, err := codec.EncodeData(Tenant{Tenant: "acme", UserID: 42})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		golden string
		m      codec.Metadata
	}{
		{"metadata_command_only", codec.Metadata{Command: "Deposit"}},
		{"metadata_caused", codec.Metadata{Command: "Deposit", Causation: causation}},
		{"metadata_caused_with_data", codec.Metadata{Command: "Withdraw", Causation: causation, Data: data}},
		{"metadata_data_only", codec.Metadata{Data: data}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			b, err := codec.EncodeMetadata(tt.m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, g[tt.golden]) {
				t.Fatalf("esmill wrote %x, kameo_es writes %x", b, g[tt.golden])
			}
			m, err := codec.DecodeMetadata(g[tt.golden])
			if err != nil {
				t.Fatal(err)
			}
			if m.Command != tt.m.Command || !bytes.Equal(m.Data, tt.m.Data) || (m.Causation == nil) != (tt.m.Causation == nil) {
				t.Fatalf("decoded %+v", m)
			}
			if m.Causation != nil && *m.Causation != *tt.m.Causation {
				t.Fatalf("causation %+v", *m.Causation)
			}
			var ten Tenant
			if err := m.DecodeData(&ten); err != nil {
				t.Fatal(err)
			}
			if len(tt.m.Data) > 0 && ten.Tenant != "acme" {
				t.Fatalf("data %+v", ten)
			}
		})
	}
}

// An event type without fields is a field-less struct variant, serde's
// `Frozen {}`, written {"Frozen": {}}; kameo_es cannot read the bare name as
// such a variant. A type marked with codec.Unit is a unit variant, the
// bare name. Either form is read into either kind of type, so events
// written by older esmill (bare names) still load.
func TestFieldlessAndUnitVariants(t *testing.T) {
	g := golden.Kameo(t)
	for _, tt := range []struct {
		golden, name string
		into         any
	}{
		{"payload_frozen", "Frozen", &Frozen{}},
		{"payload_frozen_unit", "Frozen", &Frozen{}}, // as older esmill wrote it
		{"payload_frozen", "Frozen", &struct{ codec.Unit }{}},
		{"payload_closed", "Closed", &Closed{}},
		{"payload_closed", "Closed", &struct{}{}},
	} {
		if err := codec.DecodePayload(codec.CBOR, g[tt.golden], tt.name, tt.into); err != nil {
			t.Errorf("reading %s into %T: %v", tt.golden, tt.into, err)
		}
	}
	// {"Closed": {}}, which serde reads as the unit variant Closed too.
	if err := codec.DecodePayload(codec.CBOR, []byte("\xa1\x66Closed\xa0"), "Closed", &Closed{}); err != nil {
		t.Errorf("reading the map form into a unit variant: %v", err)
	}
	// A marked type that carries data would lose it.
	type bad struct {
		codec.Unit
		N int
	}
	if _, err := codec.EncodePayload(codec.CBOR, "Bad", bad{N: 1}); !errors.Is(err, codec.ErrUnitWithFields) {
		t.Errorf("a unit variant with fields: %v", err)
	}
	if _, err := codec.EncodePayload(codec.JSON, "Bad", &bad{N: 1}); !errors.Is(err, codec.ErrUnitWithFields) {
		t.Errorf("a unit variant with fields, JSON: %v", err)
	}
	// JSON follows the same rule.
	for _, tt := range []struct {
		v    any
		name string
		want string
	}{
		{Frozen{}, "Frozen", `{"Frozen":{}}`},
		{Closed{}, "Closed", `"Closed"`},
	} {
		b, err := codec.EncodePayload(codec.JSON, tt.name, tt.v)
		if err != nil || string(b) != tt.want {
			t.Errorf("JSON %T: %s, %v; want %s", tt.v, b, err, tt.want)
		}
		for _, in := range []string{`{"` + tt.name + `":{}}`, `"` + tt.name + `"`} {
			if err := codec.DecodePayload(codec.JSON, []byte(in), tt.name, &Frozen{}); err != nil {
				t.Errorf("JSON %s: %v", in, err)
			}
			if err := codec.DecodePayload(codec.JSON, []byte(in), tt.name, &Closed{}); err != nil {
				t.Errorf("JSON %s: %v", in, err)
			}
		}
	}
}

// The event schema version is an esmill key (esv) after kameo_es's, and
// absent for version 1.
func TestEventVersionMetadata(t *testing.T) {
	g := golden.Kameo(t)
	data, err := codec.EncodeData(Tenant{Tenant: "acme", UserID: 42})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		golden string
		m      codec.Metadata
	}{
		{"metadata_esmill_v2", codec.Metadata{Command: "Open", CommandID: "msg-1", EventVersion: 2}},
		{"metadata_esmill_v3", codec.Metadata{Command: "Open", CommandID: "msg-1", EventVersion: 3}},
		{"metadata_esmill_full", codec.Metadata{Command: "Withdraw", Causation: causation, Data: data, CorrelationID: "conv-1", CommandID: "msg-9", EventVersion: 2}},
		{"metadata_command_only", codec.Metadata{Command: "Deposit", EventVersion: 1}},
	} {
		b, err := codec.EncodeMetadata(tt.m)
		if err != nil || !bytes.Equal(b, g[tt.golden]) {
			t.Errorf("%s: esmill wrote %x (%v), serde writes %x", tt.golden, b, err, g[tt.golden])
		}
		m, err := codec.DecodeMetadata(g[tt.golden])
		if err != nil || m.SchemaVersion() != max(tt.m.EventVersion, 1) || m.CommandID != tt.m.CommandID {
			t.Errorf("%s: decoded %+v, %v", tt.golden, m, err)
		}
	}
	if m, _ := codec.DecodeMetadata(g["metadata_caused"]); m.EventVersion != 0 || m.SchemaVersion() != 1 {
		t.Errorf("kameo_es metadata has schema version %d", m.SchemaVersion())
	}
	if b, _ := codec.EncodeMetadata(codec.Metadata{EventVersion: 1}); b != nil {
		t.Errorf("version 1 alone encoded to %x", b)
	}
	for _, in := range []string{
		"bf6365737600ff",         // esv 0
		"bf6365737620ff",         // esv -1
		"bf63657376634f6e65ff",   // esv "One"
		"bf636573761a80000000ff", // esv 2^31
	} {
		b, _ := hex.DecodeString(in)
		if _, err := codec.DecodeMetadata(b); !errors.Is(err, codec.ErrInvalidMetadata) {
			t.Errorf("DecodeMetadata(%s) = %v, want ErrInvalidMetadata", in, err)
		}
	}
}

// The trace context is two esmill keys (tp, tst) after the others; serde
// writes the same bytes, and kameo_es's Metadata<T> reads them, ignoring
// the keys (checked by testdata/kameo-golden when it writes the vector).
func TestTraceContextMetadata(t *testing.T) {
	g := golden.Kameo(t)
	data, err := codec.EncodeData(Tenant{Tenant: "acme", UserID: 42})
	if err != nil {
		t.Fatal(err)
	}
	want := codec.Metadata{Command: "Withdraw", Causation: causation, Data: data, CorrelationID: "conv-1", CommandID: "msg-9",
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceState: "vendor=x"}
	b, err := codec.EncodeMetadata(want)
	if err != nil || !bytes.Equal(b, g["metadata_esmill_traced"]) {
		t.Fatalf("esmill wrote %x (%v), serde writes %x", b, err, g["metadata_esmill_traced"])
	}
	m, err := codec.DecodeMetadata(g["metadata_esmill_traced"])
	if err != nil || m.TraceParent != want.TraceParent || m.TraceState != want.TraceState || m.CommandID != "msg-9" {
		t.Fatalf("decoded %+v, %v", m, err)
	}
	if (codec.Metadata{TraceParent: "x"}).IsEmpty() {
		t.Fatal("metadata with only a trace parent counts as empty")
	}
	// A trace key of the wrong type is invalid metadata, named.
	bad, _ := hex.DecodeString("bf62747001ff") // {"tp": 1}
	if _, err := codec.DecodeMetadata(bad); !errors.Is(err, codec.ErrInvalidMetadata) {
		t.Fatalf("tp of the wrong type: %v", err)
	}
}

func TestMetadataExtensionsRoundTrip(t *testing.T) {
	m := codec.Metadata{Command: "Deposit", Causation: causation, CorrelationID: "conv-1", CommandID: "msg-9"}
	b, err := codec.EncodeMetadata(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := codec.DecodeMetadata(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.CorrelationID != "conv-1" || got.CommandID != "msg-9" || got.Command != "Deposit" || *got.Causation != *causation {
		t.Fatalf("round trip: %+v", got)
	}
	// Empty metadata is no bytes, and no bytes are empty metadata.
	if b, _ := codec.EncodeMetadata(codec.Metadata{}); b != nil {
		t.Fatalf("empty metadata encoded to %x", b)
	}
	if got, err := codec.DecodeMetadata(nil); err != nil || !got.IsEmpty() {
		t.Fatalf("decoding nothing: %+v, %v", got, err)
	}
}

func TestDecodeMetadataRejectsGarbage(t *testing.T) {
	for _, in := range [][]byte{
		{0xff}, // break without a map
		{0x01}, // an integer
		[]byte("not cbor at all"),
		{0xa1, 0x64, 'c', 'e', 'i', 'd', 0x41, 0x00}, // ceid without csid/csv
		{0xa1, 0x64, 'c', 'c', 'm', 'd', 0x01},       // ccmd is not text
		{0xbf, 0x64, 'c', 'c', 'm', 'd'},             // truncated
	} {
		if _, err := codec.DecodeMetadata(in); !errors.Is(err, codec.ErrInvalidMetadata) {
			t.Errorf("DecodeMetadata(%x) = %v, want ErrInvalidMetadata", in, err)
		}
	}
}

func TestJSONPayload(t *testing.T) {
	b, err := codec.EncodePayload(codec.JSON, "MoneyDeposited", MoneyDeposited{Amount: 5})
	if err != nil || string(b) != `{"MoneyDeposited":{"amount":5}}` {
		t.Fatalf("%s, %v", b, err)
	}
	var d MoneyDeposited
	if err := codec.DecodePayload(codec.JSON, b, "MoneyDeposited", &d); err != nil || d.Amount != 5 {
		t.Fatalf("%+v %v", d, err)
	}
}

func FuzzDecodeMetadata(f *testing.F) {
	for _, s := range []string{"bf6463636d64674465706f736974ff", "bf6463636d64644f70656e6365737603ff", "a0", "f6", ""} {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := codec.DecodeMetadata(b)
		if err != nil {
			return
		}
		again, err := codec.EncodeMetadata(m)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", m, err)
		}
		m2, err := codec.DecodeMetadata(again)
		if err != nil || m2.Command != m.Command || m2.CommandID != m.CommandID || (m2.Causation == nil) != (m.Causation == nil) || m2.SchemaVersion() != m.SchemaVersion() {
			t.Fatalf("round trip changed %+v into %+v (%v)", m, m2, err)
		}
	})
}

func FuzzDecodePayload(f *testing.F) {
	for _, s := range []string{"a16e4d6f6e65794465706f7369746564a166616d6f756e741864", "66436c6f736564", "a16646726f7a656ea0", "a0"} {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		name, err := codec.PayloadName(codec.CBOR, b)
		if err != nil {
			return
		}
		var v map[string]any
		_ = codec.DecodePayload(codec.CBOR, b, name, &v)
		fields, err := codec.DecodePayloadFields(codec.CBOR, b, name)
		if err == nil && fields == nil {
			t.Fatalf("DecodePayloadFields(%x) gave nil fields without an error", b)
		}
		if err != nil && !errors.Is(err, codec.ErrInvalidPayload) {
			t.Fatalf("DecodePayloadFields(%x) = %v, want ErrInvalidPayload", b, err)
		}
	})
}
