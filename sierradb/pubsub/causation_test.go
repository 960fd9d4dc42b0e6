package pubsub_test

import (
	"errors"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/pubsub"
)

// A delivered message names its own event as the cause, not the event
// that caused it.
func TestCausationOf(t *testing.T) {
	eachServer(t, func(t *testing.T, _ server, c *sierradb.Client) {
		pub := newPublisher(t, pubsub.PublisherConfig{Client: c})
		stream := streamName("cause")
		m := message.NewMessage(watermill.NewUUID(), []byte("x"))
		m.Metadata.Set(esmill.MetaCausationEventID, "6f1c1b2e-7c1d-4a7e-9a43-1e2b3c4d5e6f")
		m.Metadata.Set(esmill.MetaCausationStreamID, "elsewhere")
		m.Metadata.Set(esmill.MetaCausationStreamVersion, "9")
		publish(t, pub, stream, "first")
		if err := pub.Publish(stream, m); err != nil {
			t.Fatal(err)
		}
		evs := scanStream(t, c, stream, 2)
		sub := newSubscriber(t, pubsub.SubscriberConfig{Client: c})
		ch, err := sub.Subscribe(ctxT(t), stream)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			got := receive(t, ch)
			got.Ack()
			c, err := pubsub.CausationOf(got)
			want := codec.Causation{EventID: evs[i].ID, StreamID: stream, StreamVersion: uint64(i)}
			if err != nil || c != want {
				t.Fatalf("CausationOf(message %d) = %+v, %v; want %+v", i, c, err, want)
			}
		}
	})
}

func TestCausationOfBadMessages(t *testing.T) {
	ok := func() *message.Message {
		m := message.NewMessage("m", nil)
		m.Metadata.Set(esmill.MetaEventID, "6f1c1b2e-7c1d-4a7e-9a43-1e2b3c4d5e6f")
		m.Metadata.Set(esmill.MetaStreamID, "acct-1")
		m.Metadata.Set(esmill.MetaStreamVersion, "3")
		return m
	}
	if c, err := pubsub.CausationOf(ok()); err != nil || c.StreamVersion != 3 || c.StreamID != "acct-1" {
		t.Fatalf("CausationOf = %+v, %v", c, err)
	}
	for key, val := range map[string]string{
		esmill.MetaEventID: "", esmill.MetaStreamID: "", esmill.MetaStreamVersion: "",
	} {
		m := ok()
		m.Metadata.Set(key, val)
		var me *pubsub.MessageError
		if _, err := pubsub.CausationOf(m); !errors.Is(err, pubsub.ErrInvalidMessage) || !errors.As(err, &me) || me.Key != key {
			t.Errorf("without %s: %v, want a *MessageError naming it", key, err)
		}
	}
	for key, val := range map[string]string{esmill.MetaEventID: "nope", esmill.MetaStreamVersion: "-1"} {
		m := ok()
		m.Metadata.Set(key, val)
		var me *pubsub.MessageError
		if _, err := pubsub.CausationOf(m); !errors.As(err, &me) || me.Key != key {
			t.Errorf("%s=%q: %v, want a *MessageError naming it", key, val, err)
		}
	}
}
