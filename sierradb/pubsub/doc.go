// Package pubsub makes SierraDB a Watermill Pub/Sub: a [Publisher] that
// appends messages to streams and a [Subscriber] that delivers stored
// events as messages, so that any Watermill router, middleware or component
// can write events to SierraDB and consume them.
//
// Both take a [*sierradb.Client] in their config and never close it:
// whoever creates a resource closes it. Their own Close is idempotent,
// stops every goroutine they started and waits for it.
//
//	pub, err := pubsub.NewPublisher(pubsub.PublisherConfig{Client: client})
//	sub, err := pubsub.NewSubscriber(pubsub.SubscriberConfig{Client: client, ConsumerGroup: "mailer"})
//
// # Topics
//
// A topic is a stream id: "order-7" is the stream order-7. Subscribers also
// accept two subscribe-only kinds of topic:
//
//   - a category, "<category>-*": every stream whose id starts with
//     "<category>-" ("order-*" gets order-7 and order-8);
//   - the all-events topic, [DefaultAllTopic] ("*") unless
//     [Topics.AllTopic] says otherwise: every event of every stream.
//
// [Topics.StreamID] maps topics to stream ids (and category prefixes to id
// prefixes), for example to add a tenant prefix; the default is the
// identity. A topic whose stream id SierraDB would reject (empty, over 64
// bytes, with a NUL byte) is an error matching [ErrInvalidTopic], and so is
// publishing to a category or the all-events topic.
//
// A stream topic follows the stream under its default partition key
// ([sierradb.StreamPartitionKey]), which is also the key this publisher
// writes with. Streams written under another key (for example several
// entities appended together with EMAPPEND) are reached through a category
// or the all-events topic, which match events whatever their key.
//
// # Publishing
//
// [Publisher.Publish] turns each message into an event:
//
//   - the payload is the event payload, unchanged;
//   - the event name is [PublisherConfig.EventName] of the message, by
//     default the metadata key esmill.MetaEventName, else [DefaultEventName];
//   - the event metadata is esmill's envelope ([codec.EncodeMetadata],
//     kameo_es-compatible): the message's metadata, as a CBOR map of
//     strings, goes under data, together with the message UUID (under a
//     reserved key, so that subscribers get the same UUID back). The keys
//     esmill.MetaCorrelationID, esmill.MetaCommandID,
//     esmill.MetaCausationCommand and the three causation keys
//     (esmill.MetaCausationEventID, esmill.MetaCausationStreamID,
//     esmill.MetaCausationStreamVersion) become the envelope's cid, cmid,
//     ccmd and ceid/csid/csv fields;
//   - the keys the subscriber sets from an event's position (event id,
//     stream id and version, partition, timestamp, ...) are never stored,
//     so a consumed message published again does not carry its old
//     position into the new event. Every other key is stored as it is,
//     esmill's own command keys included: a cqrs command message keeps its
//     meaning through SierraDB.
//
// The server assigns event ids and timestamps.
//
// All messages of one Publish call go to the server in one request, an
// EMAPPEND (EAPPEND for a single message) under the stream's partition key
// with consecutive expected versions: either all are stored or none is.
// A message whose context is done stops the whole call before it is sent;
// the context's error is returned. A context that ends while the call is
// at the server cuts the request short (unless the call was joined with
// others, below) and its error is returned too, but the server may have
// stored the events: see the outcome of failed requests below.
//
// # Expected versions
//
// SierraDB rejects an append that does not state the version its stream
// must be at (empty, or the exact latest version). A message may state it:
// [PublisherConfig.ExpectedVersion], by default the metadata key
// esmill.MetaAppendExpectedVersion holding "empty" or a number. The publisher then
// sends exactly that, and a conflict is returned as an error matching
// [sierradb.ErrWrongExpectedVersion] (a [*sierradb.WrongExpectedVersionError]
// telling the stream's real version). A call containing any such message is
// never retried; messages after it in the same call follow it (version
// n+1, n+2, ...). (A custom ExpectedVersion func may also return
// [sierradb.ExpectAny] or [sierradb.ExpectExists] for a server without
// strict versioning; the messages after it in the call are then sent
// unchecked as well.)
//
// Plain Watermill messages carry no version, and for them the publisher
// appends after the stream's current version: it reads the version once
// (ESVER) and then remembers the version each of its appends leaves, so
// that an append is one round trip. On a conflict (another writer, or a
// version read before a recent append became visible) it takes the version
// from the server's reply and sends the call again, up to
// [PublisherConfig.MaxConflictRetries] times (default
// [DefaultMaxConflictRetries]). Set [PublisherConfig.RequireExpectedVersion]
// to refuse messages without a version instead.
//
// Within one Publisher, calls to the same stream are serialised, so they
// do not conflict with each other. While a call is at the server, calls to
// the same stream that arrive meanwhile wait, and the next one to go sends
// all of them that carry no expected version in one EMAPPEND (up to
// [PublisherConfig.MaxBatchEvents] events). Each call's messages stay
// together and in order, so each call is still atomic; calls joined this
// way succeed or fail together. A call with expected versions is always
// sent alone. A joined request is cancelled only when every caller in it
// has given up.
//
// When a request fails on the network, its outcome is unknown: the events
// may be stored. The error is returned (and the remembered version
// forgotten); a caller that publishes again may store the messages twice.
// Publishing is therefore at least once, like Watermill's other Pub/Subs.
//
// # Subscribing
//
// [Subscriber.Subscribe] builds on the client's subscriptions
// ([sierradb.Client.SubscribeStream], [sierradb.Client.SubscribePartitions]),
// which follow history and then live events with EACK flow control and
// reconnect without gap or duplicate. A category or the all-events topic
// subscribes to every partition and, for a category, skips other streams'
// events on the client side.
//
// Each Subscribe delivers one message at a time and waits for its Ack or
// Nack before the next (Watermill's contract). Order is the stream's for a
// stream topic; for a category or all events it is the order of each
// partition (a stream lives in one partition, so each stream stays in
// order), with no order between partitions.
//
//   - Ack: the event is acknowledged to the server and, with a consumer
//     group, its position is saved.
//   - Nack: the same message is delivered again, before anything after it,
//     after [SubscriberConfig.NackDelay] (default 10ms), doubling with each
//     further Nack up to [SubscriberConfig.MaxNackDelay] (default 1s). The
//     redelivered message carries esmill.MetaRedeliveries. Redelivery is
//     unlimited by default; with [SubscriberConfig.MaxRedeliveries] set, a
//     message nacked once more is given to
//     [SubscriberConfig.OnRedeliveriesExhausted] (for example to publish it
//     to a poison topic) and then acknowledged, so a poison message never
//     blocks its stream for ever. Without the hook it is logged and
//     dropped. Redelivery counts live in the subscription: a new
//     subscription starts counting again.
//   - Each message's context derives from Subscribe's ctx and is cancelled
//     on Ack, on Nack and when the subscription ends.
//   - When Subscribe's ctx is done or the subscriber is closed, the output
//     channel is closed. A message delivered but not acked is not
//     recorded, so the next subscriber of the group gets it again; an Ack
//     that happened before the close is kept.
//
// Where a subscription starts: at the consumer group's checkpoint (below);
// otherwise at [SubscriberConfig.Start]: sierradb.StartBeginning (the
// default, every stored event), sierradb.StartLatest or sierradb.StartAt.
//
// # Consumed messages
//
// A message's payload is the event payload and its UUID is the message
// UUID the publisher stored, or the event id for events written by other
// writers. Its metadata is the stored Watermill metadata, then these keys
// (which win over stored keys of the same name): esmill.MetaEventID,
// esmill.MetaEventName, esmill.MetaStreamID, esmill.MetaStreamVersion,
// esmill.MetaPartitionKey, esmill.MetaPartitionID,
// esmill.MetaPartitionSequence, esmill.MetaTransactionID, esmill.MetaTimestamp
// (RFC 3339 UTC with milliseconds, [TimestampFormat]), and, when the
// event's envelope has them, esmill.MetaCorrelationID, esmill.MetaCommandID,
// esmill.MetaCausationCommand, esmill.MetaCausationEventID,
// esmill.MetaCausationStreamID and esmill.MetaCausationStreamVersion.
//
// Events written by other writers (kameo_es, esmill entities, raw clients)
// convert as well, and a conversion never fails or stalls the
// subscription: envelope metadata whose data is not a map of strings gives
// the string entries it has; undecodable metadata gives a message with the
// payload and the keys above. Either way esmill.MetaMetadataError says what
// could not be read.
//
// # Consumer groups
//
// A subscriber with [SubscriberConfig.ConsumerGroup] keeps the group's
// position per (group, topic) in a [CheckpointStore]: for each partition,
// the sequence of the last event processed. Subscribe resumes each
// partition after its checkpoint; partitions without one (a new group)
// start at [SubscriberConfig.Start], from the beginning by default. The
// position is saved after every Ack, or every
// [SubscriberConfig.CheckpointEvery] acks, and whatever is not saved yet is
// saved when the subscription ends. So a group restarted after a clean
// close receives again only the message that was delivered but not acked;
// after a crash, also the acks since the last save. The events of other
// streams that a category passes over move the position too (never past a
// message not yet acked); their positions are saved with the next ack, or,
// when no matching event comes, after 1000 of them or once the
// subscription has been idle for a second.
//
// [MemoryCheckpoints] ([NewMemoryCheckpoints]) is the in-memory store and
// the default (one per Subscriber). Share one value between subscribers to
// resume in the same process; implement [CheckpointStore] (Load and Save)
// over a database to resume across processes.
//
// Two subscriptions of one group (in two processes, or two Subscribe calls)
// do not coordinate: SierraDB has no consumer groups of its own, so both
// receive every event, and the checkpoint is whatever the last Save wrote,
// which may move it back. Run one process per group and topic, or
// partition the work yourself: one group per category, or a topic per
// partition range routed by your own code.
//
// # Delivery guarantees
//
// At least once, in order per stream, nothing lost across restarts of a
// consumer group (with a durable store). Duplicates come from: a message
// delivered but not acked before a close or crash; acks not yet saved at a
// crash (CheckpointEvery > 1); a Publish retried by its caller after a
// network error; two processes running one group. Deduplicate on
// esmill.MetaEventID (an event) or the message UUID (a message published
// twice) where that matters.
//
// # Watermill's universal test suite
//
// The package passes github.com/ThreeDotsLabs/watermill/pubsub/tests.TestPubSub,
// in full (not short mode) and under -race, against the embedded server and
// the real SierraDB 0.3.1 (TestUniversal), with these Features:
//
//	ConsumerGroups:                      true
//	ExactlyOnceDelivery:                 false
//	GuaranteedOrder:                     true
//	GuaranteedOrderWithSingleSubscriber: false
//	Persistent:                          true
//	NewSubscriberReceivesOldMessages:    true
//	RequireSingleInstance:               false
//	ContextPreserved:                    false
//	RestartServiceCommand:               none
//
// The plain constructor subscribes without a group (from the beginning);
// the consumer-group constructor shares one MemoryCheckpoints between all
// subscribers of a run, as a durable store would be shared. The suite's
// subscribers use a NackDelay of 1ms up to 20ms, because
// TestContinueAfterErrors nacks one message 100 times per subscriber.
//
// What the false and empty fields leave out, and why:
//
//   - ExactlyOnceDelivery: delivery is at least once (see above). The suite
//     then skips only the extra check at the end of TestNoAck that nothing
//     is delivered again after an Ack, and reads with deduplication.
//   - GuaranteedOrderWithSingleSubscriber: a weaker claim than
//     GuaranteedOrder; leaving it false makes TestPublishSubscribeInOrder
//     read through ten subscribers at once instead of one, which passes.
//   - ContextPreserved: a message's Go context cannot be stored in an
//     event; consumed messages carry Subscribe's context instead. The suite
//     then checks that message contexts are cancelled on Ack and on Close,
//     which holds, instead of comparing context values.
//   - RestartServiceCommand: TestReconnect is skipped. It needs a command
//     that restarts the broker, and neither test server has one: the
//     embedded server runs inside the test binary, and the real one is a
//     child process on a random port and temporary directory. This
//     package's own TestReconnect covers the same ground instead: it cuts
//     every connection repeatedly (through a proxy) while publishing and
//     consuming, against both servers, and checks that every message
//     arrives in order.
//   - RequireSingleInstance: false is the stronger claim (several
//     publisher and subscriber instances work together).
//
// No test of the suite is skipped except TestReconnect.
//
// Besides the suite, TestGroupRestart closes and restarts a consumer group
// dozens of times at random points while a publisher appends (on a stream
// and on a category of three streams, both servers) and checks that every
// event arrives in order per stream and that only messages not acked
// before a restart, or nacked, arrive twice.
//
// # Performance
//
// Publishing costs one round trip per Publish call after the first to a
// stream, and concurrent calls to one stream share round trips. Consuming
// reads ahead through the client's window (the client acknowledges in
// batches), and a goroutine per subscription decodes up to 32 messages
// ahead of the consumer, so that decoding overlaps with handling; what
// remains per message is two goroutine hand-offs and, with a group, a
// checkpoint save. The benchmarks in bench_test.go compare both with the
// raw client doing the same work on each server.
package pubsub
