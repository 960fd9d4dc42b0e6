// Package pubsub makes SierraDB a Watermill Pub/Sub: a [Publisher] that
// appends messages to streams and a [Subscriber] that delivers stored
// events as messages, so that any Watermill router, middleware or component
// can write events to SierraDB and consume them. It passes Watermill's
// universal Pub/Sub test suite on the embedded server and the real SierraDB
// 0.3.1 (TestUniversal; its README lists the features and why).
//
// Both take a *sierradb.Client in their config and never close it (tested: TestPublisherLifecycle, TestSubscribeLifecycle); their
// own Close is idempotent and waits for every goroutine they started.
//
//	pub, err := pubsub.NewPublisher(pubsub.PublisherConfig{Client: client})
//	sub, err := pubsub.NewSubscriber(pubsub.SubscriberConfig{Client: client, ConsumerGroup: "mailer"})
//
// A topic is a stream id ("order-7"); subscribers also take a category
// ("order-*") and the all-events topic ("*"), see [Topics].
//
// Publishing: all messages of one Publish call are appended in one atomic
// request with consecutive expected versions. A message may state the
// version its stream must be at (esmill.MetaAppendExpectedVersion);
// without one the publisher appends after the stream's current version and
// retries conflicts itself. The message's metadata is stored with the event
// and comes back on delivery, except the keys the subscriber sets from the
// event's position (esmill.MetaEventID, esmill.MetaStreamVersion, ...).
// Correlation and causation keys become the event's kameo_es metadata
// envelope. So a cqrs command message keeps its meaning through SierraDB.
//
// Subscribing: one message at a time per subscription, in order per
// stream; Nack redelivers after a growing delay, with an optional limit
// and hook ([SubscriberConfig.MaxRedeliveries]). A consumer group
// ([SubscriberConfig.ConsumerGroup]) keeps its positions in a
// [CheckpointStore] and resumes after them. Delivery is at least once.
//
// The package's README (sierradb/pubsub/README.md in the repository) gives
// the full rules: topics, expected versions, batching of concurrent
// publishes, redelivery, consumer groups, delivery guarantees, the
// universal suite's features and performance.
package pubsub
