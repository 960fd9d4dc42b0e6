package esmill

// Watermill message metadata keys, defined once for every esmill package.
// Each key has one meaning wherever it appears: a command message that
// travels through the SierraDB Pub/Sub keeps its command keys, and a key
// the Pub/Sub adapter reads (such as [MetaAppendExpectedVersion]) is never
// one that cqrs writes (tested: TestMetadataKeysAreDistinct,
// TestCommandThroughSierraDBPubSub).
//
// Every key but [MetaCorrelationID], [MetaTraceParent] and [MetaTraceState]
// starts with "esmill_": those three are other tools' names, kept so that
// Watermill's own middleware and OpenTelemetry's propagators read them.

// Keys shared by command messages and events: where they came from.
const (
	// MetaCorrelationID ties messages and events of one conversation
	// together. It is Watermill's own key (the CorrelationID middleware
	// reads and copies it), stored in events as the envelope's cid.
	MetaCorrelationID = "correlation_id"
	// MetaCausationEventID, MetaCausationStreamID and
	// MetaCausationStreamVersion identify the event that caused a command
	// (the envelope's ceid, csid and csv). They go together: all three or
	// none.
	MetaCausationEventID       = "esmill_causation_event_id"
	MetaCausationStreamID      = "esmill_causation_stream_id"
	MetaCausationStreamVersion = "esmill_causation_stream_version"
	// MetaTraceParent and MetaTraceState carry the OpenTelemetry trace
	// context (W3C Trace Context: the traceparent and tracestate headers,
	// under their own names) from the sender of a command to the router
	// that runs it, and from a stored event to whoever consumes it, in
	// this process or another. The executor stores them in each event's
	// metadata envelope (tp, tst); the SierraDB Pub/Sub subscriber sets
	// them on the messages it delivers.
	MetaTraceParent = "traceparent"
	MetaTraceState  = "tracestate"
)

// Keys of a command message (package cqrs). The message UUID is the
// command's id.
const (
	// MetaCommand is the command's name.
	MetaCommand = "esmill_command"
	// MetaCategory is the entity type's category.
	MetaCategory = "esmill_category"
	// MetaEntityID is the string form of the entity's id.
	MetaEntityID = "esmill_entity_id"
	// MetaFormat is the payload's format: "cbor" (the default when absent)
	// or "json".
	MetaFormat = "esmill_format"
	// MetaCommandExpectedVersion is the version the entity must be at for
	// the command to run ("empty", "exists" or a number): a check on the
	// entity, not on the stream the message travels through.
	MetaCommandExpectedVersion = "esmill_command_expected_version"
	// MetaCommandPartitionKey is the entity's partition key, when the
	// command names one.
	MetaCommandPartitionKey = "esmill_command_partition_key"
	// MetaCommandTime is the command's logical time (RFC 3339 with
	// nanoseconds), which becomes its events' timestamp.
	MetaCommandTime = "esmill_command_time"
	// MetaCommandData is the caller's data (base64 of its CBOR), stored
	// with the command's events.
	MetaCommandData = "esmill_command_data"
	// MetaReplyTopic is the topic a caller waits on for the reply.
	MetaReplyTopic = "esmill_reply_topic"
	// MetaReplyTo, on a reply, is the UUID of the command message it
	// answers.
	MetaReplyTo = "esmill_reply_to"
	// MetaCommandPartitions is the number of command partitions the
	// sender spread the command over; a router with another count
	// refuses the message, naming both.
	MetaCommandPartitions = "esmill_command_partitions"
)

// Keys the SierraDB Pub/Sub publisher (package sierradb/pubsub) reads from a
// message. Besides these it reads [MetaCorrelationID] and the three
// causation keys into the event's metadata envelope. It stores none of
// them among the event's Watermill metadata; every other key is stored as
// it is.
const (
	// MetaEventName names the event the message becomes. The subscriber
	// sets it on every message.
	MetaEventName = "esmill_event_name"
	// MetaAppendExpectedVersion is the version the target stream must be
	// at before the message's event is appended: "empty" or a number. It
	// is a check on the stream the message is written to (compare
	// [MetaCommandExpectedVersion]).
	MetaAppendExpectedVersion = "esmill_append_expected_version"
	// MetaCommandID is the id of the command that produced the event (the
	// envelope's cmid).
	MetaCommandID = "esmill_command_id"
	// MetaCausationCommand is the name of the command that produced the
	// event (the envelope's ccmd).
	MetaCausationCommand = "esmill_causation_command"
)

// Keys the SierraDB Pub/Sub subscriber sets on every message, from the
// event it delivers: where the event is stored. The publisher never stores
// them, so a consumed message published again does not carry its old
// position into the new event (tested: TestPublishOneCallIsOneTransaction,
// TestSubscribeMetadata).
const (
	MetaEventID           = "esmill_event_id"
	MetaStreamID          = "esmill_stream_id"
	MetaStreamVersion     = "esmill_stream_version"
	MetaPartitionKey      = "esmill_partition_key"
	MetaPartitionID       = "esmill_partition_id"
	MetaPartitionSequence = "esmill_partition_sequence"
	MetaTransactionID     = "esmill_transaction_id"
	// MetaTimestamp is the event time in RFC 3339 with milliseconds, UTC.
	MetaTimestamp = "esmill_timestamp"
	// MetaMetadataError says what of the event's metadata could not be
	// read; the message still carries the payload and what could be.
	MetaMetadataError = "esmill_metadata_error"
	// MetaRedeliveries counts the redeliveries of a message after Nacks.
	MetaRedeliveries = "esmill_redeliveries"
	// MetaEventVersion is the event's schema version when it is above 1
	// (esmill's esv metadata key; absent means 1), so that a consumer
	// knows which shape of the event the payload has.
	MetaEventVersion = "esmill_event_version"
	// MetaUpcastError is set on a message whose event the subscriber's
	// Upcast hook could not rewrite (an upcaster failed, or newer code
	// wrote it); its value is the hook's error, and the message carries
	// the event as stored.
	MetaUpcastError = "esmill_upcast_error"
	// MetaMessageUUID holds a published message's UUID inside the stored
	// event, so that subscribers deliver it under the same UUID. It never
	// appears on a delivered message (tested: TestSubscribeMetadata).
	MetaMessageUUID = "esmill_message_uuid"
)

// Keys the Retry middleware (package middleware) sets on a message it
// parks on the poison topic.
const (
	// MetaPoisonReason is the error's text.
	MetaPoisonReason = "esmill_poison_reason"
	// MetaPoisonClass is the error's [Class]: transient (its retries ran
	// out), final or poison.
	MetaPoisonClass = "esmill_poison_class"
	// MetaPoisonHandler is the Watermill handler that failed.
	MetaPoisonHandler = "esmill_poison_handler"
	// MetaPoisonTopic is the topic the message was consumed from.
	MetaPoisonTopic = "esmill_poison_topic"
	// MetaPoisonAttempts is how many times the handler ran.
	MetaPoisonAttempts = "esmill_poison_attempts"
)
