package pubsub_test

import (
	"fmt"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/pubsub"
)

// MaxBatchEvents caps the joining of concurrent calls, not one call: a
// call of more messages than the cap is still one EMAPPEND, one
// transaction.
func TestPublishCallOverMaxBatchEventsIsNotSplit(t *testing.T) {
	eachServer(t, func(t *testing.T, _ server, c *sierradb.Client) {
		pub := newPublisher(t, pubsub.PublisherConfig{Client: c, MaxBatchEvents: 2})
		stream := streamName("big")
		const n = 5
		msgs := make([]*message.Message, n)
		for i := range msgs {
			msgs[i] = message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprint(i)))
		}
		if err := pub.Publish(stream, msgs...); err != nil {
			t.Fatal(err)
		}
		evs := scanStream(t, c, stream, n)
		for i, ev := range evs {
			if ev.TransactionID != evs[0].TransactionID {
				t.Errorf("event %d in transaction %s, event 0 in %s: a call of %d messages was split at MaxBatchEvents 2", i, ev.TransactionID, evs[0].TransactionID, n)
			}
			if string(ev.Payload) != fmt.Sprint(i) {
				t.Errorf("event %d payload %q", i, ev.Payload)
			}
		}
	})
}
