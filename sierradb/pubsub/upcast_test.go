package pubsub_test

import (
	"bytes"
	"context"
	"github.com/esmill/esmill"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/internal/ledger"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/pubsub"
)

// With the Upcast hook, a subscriber delivers stored events in their
// current shape (name, payload, schema version), also when a nacked
// message is delivered again; an event that cannot be upcast arrives as
// stored with the reason. Without the hook, events arrive as stored.
func TestSubscriberUpcast(t *testing.T) {
	g, err := ledger.Golden()
	if err != nil {
		t.Fatal(err)
	}
	typ, err := ledger.Type()
	if err != nil {
		t.Fatal(err)
	}
	noCurrency, err := codec.EncodePayload(codec.CBOR, "Opened", ledger.OpenedV2{Owner: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	enc := func(name string, v any) []byte {
		b, err := codec.EncodePayload(codec.CBOR, name, v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	stored := []ledger.Stored{
		{Name: "Opened", Payload: g["payload_opened"], Metadata: g["metadata_command_only"]},
		{Name: "MoneyAdded", Payload: g["payload_money_added"]},
		{Name: "MoneyWithdrawn", Payload: g["payload_withdrawn"]},
		{Name: "Frozen", Payload: g["payload_frozen_unit"]},
		{Name: "Opened", Payload: noCurrency, Metadata: g["metadata_esmill_v2"]},
		{Name: "Opened", Payload: g["payload_opened_v3"], Metadata: g["metadata_esmill_v3"]},
	}
	want := []struct {
		name    string
		payload []byte
		version string // esmill_event_version
		err     string // esmill_upcast_error
	}{
		{"Opened", enc("Opened", ledger.Opened{Holder: "alice", Currency: ledger.DefaultCurrency}), "3", ""},
		{"MoneyDeposited", enc("MoneyDeposited", ledger.Deposited{Amount: 250}), "", ""},
		{"MoneyWithdrawn", enc("MoneyWithdrawn", ledger.Withdrawn{Amount: 4294967295, Reason: "unknown"}), "2", ""},
		{"Frozen", g["payload_frozen_unit"], "", ""}, // current already: as stored
		{"Opened", noCurrency, "2", "Opened v2 without a currency"},
		{"Opened", g["payload_opened_v3"], "3", ""},
	}
	eachServer(t, func(t *testing.T, _ server, c *sierradb.Client) {
		stream := streamName("ledger")
		for i, e := range stored {
			_, err := c.Append(context.Background(), sierradb.NewEvent{StreamID: stream, Name: e.Name, Payload: e.Payload, Metadata: e.Metadata, ExpectedVersion: sierradb.ExpectAfter(int64(i) - 1)})
			if err != nil {
				t.Fatal(err)
			}
		}
		sub := newSubscriber(t, pubsub.SubscriberConfig{Client: c, Upcast: pubsub.ChainUpcasts(typ.UpcastStored)})
		ch, err := sub.Subscribe(ctxT(t), stream)
		if err != nil {
			t.Fatal(err)
		}
		for i, w := range want {
			msg := receive(t, ch)
			if i == 0 {
				// Delivered again after a Nack: still upcast.
				msg.Nack()
				msg = receive(t, ch)
				if msg.Metadata.Get(esmill.MetaRedeliveries) != "1" {
					t.Fatalf("not the redelivery: %v", msg.Metadata)
				}
			}
			msg.Ack()
			md := msg.Metadata
			if md.Get(esmill.MetaEventName) != w.name || !bytes.Equal(msg.Payload, w.payload) ||
				md.Get(esmill.MetaEventVersion) != w.version || md.Get(esmill.MetaStreamVersion) != string(rune('0'+i)) {
				t.Errorf("message %d: %s %x version %q at %s, want %s %x version %q", i,
					md.Get(esmill.MetaEventName), msg.Payload, md.Get(esmill.MetaEventVersion), md.Get(esmill.MetaStreamVersion), w.name, w.payload, w.version)
			}
			if got := md.Get(esmill.MetaUpcastError); (w.err == "") != (got == "") || !strings.Contains(got, w.err) {
				t.Errorf("message %d: upcast error %q, want %q", i, got, w.err)
			}
		}
		// The message given to OnRedeliveriesExhausted is upcast too.
		exhausted := make(chan *message.Message, 1)
		sub = newSubscriber(t, pubsub.SubscriberConfig{Client: c, Upcast: typ.UpcastStored, MaxRedeliveries: 1, NackDelay: time.Millisecond,
			OnRedeliveriesExhausted: func(_ context.Context, _ string, msg *message.Message) error { exhausted <- msg; return nil }})
		ch, err = sub.Subscribe(ctxT(t), stream)
		if err != nil {
			t.Fatal(err)
		}
		receive(t, ch).Nack()
		receive(t, ch).Nack()
		select {
		case msg := <-exhausted:
			if !bytes.Equal(msg.Payload, want[0].payload) {
				t.Errorf("OnRedeliveriesExhausted got %x, want %x", msg.Payload, want[0].payload)
			}
		case <-ctxT(t).Done():
			t.Fatal("OnRedeliveriesExhausted not called")
		}
		if msg := receive(t, ch); msg.Metadata.Get(esmill.MetaEventName) != "MoneyDeposited" {
			t.Errorf("after the exhausted message: %s", msg.Metadata.Get(esmill.MetaEventName))
		} else {
			msg.Ack()
		}
		// Without the hook: as stored.
		raw := newSubscriber(t, pubsub.SubscriberConfig{Client: c})
		ch, err = raw.Subscribe(ctxT(t), stream)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range stored[:2] {
			msg := receive(t, ch)
			msg.Ack()
			if msg.Metadata.Get(esmill.MetaEventName) != e.Name || !bytes.Equal(msg.Payload, e.Payload) {
				t.Errorf("raw message %d: %s %x", i, msg.Metadata.Get(esmill.MetaEventName), msg.Payload)
			}
		}
	})
}
