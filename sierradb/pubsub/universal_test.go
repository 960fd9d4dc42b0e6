package pubsub_test

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/pubsub"
)

// features is what the adapter guarantees; doc.go justifies each false
// field.
var features = tests.Features{
	ConsumerGroups:                      true,
	ExactlyOnceDelivery:                 false,
	GuaranteedOrder:                     true,
	GuaranteedOrderWithSingleSubscriber: false,
	Persistent:                          true,
	RestartServiceCommand:               nil,
	RequireSingleInstance:               false,
	NewSubscriberReceivesOldMessages:    true,
	ContextPreserved:                    false,
}

// TestUniversal runs Watermill's universal Pub/Sub suite against each
// server.
func TestUniversal(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			client := newClient(t, srv.addr(t))
			// Shared by every consumer-group subscriber of this run, as
			// a durable store would be.
			checkpoints := pubsub.NewMemoryCheckpoints()
			f := features
			tests.TestPubSub(t, f,
				func(t *testing.T) (message.Publisher, message.Subscriber) {
					return universalPubSub(t, client, "", checkpoints)
				},
				func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
					return universalPubSub(t, client, group, checkpoints)
				})
		})
	}
}

func universalPubSub(t *testing.T, client *sierradb.Client, group string, cps pubsub.CheckpointStore) (message.Publisher, message.Subscriber) {
	pub := newPublisher(t, pubsub.PublisherConfig{Client: client})
	// TestContinueAfterErrors nacks one message 100 times per subscriber:
	// a short maximum delay keeps that quick.
	sub := newSubscriber(t, pubsub.SubscriberConfig{
		Client: client, ConsumerGroup: group, Checkpoints: cps,
		NackDelay: time.Millisecond, MaxNackDelay: 20 * time.Millisecond,
	})
	return pub, sub
}
