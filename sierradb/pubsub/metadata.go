package pubsub

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/sierradb"
)

// ReservedPrefix starts every metadata key this package gives a meaning
// to. The publisher reads the keys it knows (below) and never stores any
// key with this prefix in an event; the subscriber sets them.
const ReservedPrefix = "esmill_"

// Metadata keys read by the [Publisher]. Each is optional.
const (
	// MetadataEventName names the event. Default: [DefaultEventName].
	MetadataEventName = "esmill_event_name"
	// MetadataExpectedVersion is the version the stream must be at before
	// the event: "empty" or a number. Without it the publisher finds the
	// version itself (see the package documentation).
	MetadataExpectedVersion = "esmill_expected_version"
	// MetadataCorrelationID is stored as the event's correlation id (cid).
	MetadataCorrelationID = "esmill_correlation_id"
	// MetadataCommandID is stored as the id of the command message that
	// produced the event (cmid).
	MetadataCommandID = "esmill_command_id"
	// MetadataCausationCommand is stored as the name of the command that
	// produced the event (ccmd).
	MetadataCausationCommand = "esmill_causation_command"
	// MetadataCausationEventID, MetadataCausationStreamID and
	// MetadataCausationStreamVersion identify the event that caused the
	// command (ceid, csid, csv). Give all three or none.
	MetadataCausationEventID       = "esmill_causation_event_id"
	MetadataCausationStreamID      = "esmill_causation_stream_id"
	MetadataCausationStreamVersion = "esmill_causation_stream_version"
)

// Metadata keys set by the [Subscriber] on every message, next to the
// envelope keys above (event name, correlation id, command id, causation)
// when the event carries them. They overwrite keys of the same name found
// in the stored metadata.
const (
	MetadataEventID           = "esmill_event_id"
	MetadataStreamID          = "esmill_stream_id"
	MetadataStreamVersion     = "esmill_stream_version"
	MetadataPartitionKey      = "esmill_partition_key"
	MetadataPartitionID       = "esmill_partition_id"
	MetadataPartitionSequence = "esmill_partition_sequence"
	MetadataTransactionID     = "esmill_transaction_id"
	// MetadataTimestamp is the event time in RFC 3339 with milliseconds,
	// UTC (SierraDB keeps milliseconds).
	MetadataTimestamp = "esmill_timestamp"
	// MetadataDecodeError is set when the event's metadata could not be
	// read completely; its value says why. The message still carries the
	// payload and every key that could be read.
	MetadataDecodeError = "esmill_metadata_error"
	// MetadataRedeliveries is set on a message redelivered after a Nack:
	// how many times it has been redelivered.
	MetadataRedeliveries = "esmill_redeliveries"
)

// messageUUIDKey holds the Watermill message UUID inside the stored
// metadata map. It carries the reserved prefix, so no user key can clash.
const messageUUIDKey = "esmill_message_uuid"

// DefaultEventName is the event name of a message without
// [MetadataEventName] when [PublisherConfig.EventName] is not set.
const DefaultEventName = "WatermillMessage"

// TimestampFormat is the layout of [MetadataTimestamp].
const TimestampFormat = "2006-01-02T15:04:05.000Z07:00"

// EventNameFromMetadata is the default [PublisherConfig.EventName]: the
// value of [MetadataEventName], else [DefaultEventName].
func EventNameFromMetadata(_ string, msg *message.Message) string {
	if n := msg.Metadata.Get(MetadataEventName); n != "" {
		return n
	}
	return DefaultEventName
}

// ExpectedVersionFromMetadata is the default
// [PublisherConfig.ExpectedVersion]: it parses [MetadataExpectedVersion]
// ("empty" or a number). ok is false when the key is absent.
func ExpectedVersionFromMetadata(_ string, msg *message.Message) (v sierradb.ExpectedVersion, ok bool, err error) {
	s, ok := msg.Metadata[MetadataExpectedVersion]
	if !ok {
		return sierradb.ExpectedVersion{}, false, nil
	}
	v, err = sierradb.ParseExpectedVersion(s)
	if err != nil || !(v.IsEmpty() || isExact(v)) {
		return v, true, &MessageError{UUID: msg.UUID, Key: MetadataExpectedVersion,
			Reason: fmt.Sprintf("%q is neither \"empty\" nor a version number", s)}
	}
	return v, true, nil
}

func isExact(v sierradb.ExpectedVersion) bool {
	_, ok := v.Exact()
	return ok
}

// encodeMetadata builds the event metadata of a message: the envelope
// fields from the reserved keys, and every other key plus the UUID as a
// CBOR map of strings under data.
func encodeMetadata(msg *message.Message) ([]byte, error) {
	var env codec.Metadata
	data := make(map[string]string, len(msg.Metadata)+1)
	for k, v := range msg.Metadata {
		if !strings.HasPrefix(k, ReservedPrefix) {
			data[k] = v
		}
	}
	if msg.UUID != "" {
		data[messageUUIDKey] = msg.UUID
	}
	md := msg.Metadata
	env.CorrelationID = md[MetadataCorrelationID]
	env.CommandID = md[MetadataCommandID]
	env.Command = md[MetadataCausationCommand]
	eid, hasEID := md[MetadataCausationEventID]
	sid, hasSID := md[MetadataCausationStreamID]
	ver, hasVer := md[MetadataCausationStreamVersion]
	if hasEID || hasSID || hasVer {
		bad := func(key, reason string, err error) error {
			return &MessageError{UUID: msg.UUID, Key: key, Reason: reason, Err: err}
		}
		if !hasEID || !hasSID || !hasVer {
			return nil, bad(MetadataCausationEventID, "causation needs the event id, stream id and stream version together", nil)
		}
		id, err := uuid.Parse(eid)
		if err != nil {
			return nil, bad(MetadataCausationEventID, "not a UUID", err)
		}
		v, err := strconv.ParseUint(ver, 10, 64)
		if err != nil {
			return nil, bad(MetadataCausationStreamVersion, "not a version number", err)
		}
		env.Causation = &codec.Causation{EventID: id, StreamID: sid, StreamVersion: v}
	}
	if len(data) > 0 {
		raw, err := codec.EncodeData(data)
		if err != nil {
			return nil, &MessageError{UUID: msg.UUID, Reason: "cannot encode metadata", Err: err}
		}
		env.Data = raw
	}
	return codec.EncodeMetadata(env)
}

// toMessage turns a stored event into a message. It never fails: what
// cannot be read is reported under MetadataDecodeError.
func toMessage(ev *sierradb.Event) *message.Message {
	md := make(message.Metadata, 16)
	var problems []string
	id := ""
	if len(ev.Metadata) > 0 {
		env, err := codec.DecodeMetadata(ev.Metadata)
		if err != nil {
			problems = append(problems, err.Error())
		} else {
			if len(env.Data) > 0 {
				problems = decodeData(env, md, problems)
				id = md[messageUUIDKey]
				delete(md, messageUUIDKey)
			}
			if env.Command != "" {
				md[MetadataCausationCommand] = env.Command
			}
			if c := env.Causation; c != nil {
				md[MetadataCausationEventID] = c.EventID.String()
				md[MetadataCausationStreamID] = c.StreamID
				md[MetadataCausationStreamVersion] = strconv.FormatUint(c.StreamVersion, 10)
			}
			if env.CorrelationID != "" {
				md[MetadataCorrelationID] = env.CorrelationID
			}
			if env.CommandID != "" {
				md[MetadataCommandID] = env.CommandID
			}
			if env.EventVersion > 1 {
				md[MetadataEventVersion] = strconv.Itoa(env.EventVersion)
			}
		}
	}
	eventID := ev.ID.String()
	if id == "" {
		id = eventID
	}
	md[MetadataEventID] = eventID
	md[MetadataEventName] = ev.Name
	md[MetadataStreamID] = ev.StreamID
	md[MetadataStreamVersion] = strconv.FormatUint(ev.StreamVersion, 10)
	md[MetadataPartitionKey] = ev.PartitionKey.String()
	md[MetadataPartitionID] = strconv.FormatUint(uint64(ev.PartitionID), 10)
	md[MetadataPartitionSequence] = strconv.FormatUint(ev.PartitionSequence, 10)
	md[MetadataTransactionID] = ev.TransactionID.String()
	md[MetadataTimestamp] = ev.Timestamp.UTC().Format(TimestampFormat)
	if len(problems) > 0 {
		md[MetadataDecodeError] = strings.Join(problems, "; ")
	}
	msg := message.NewMessage(id, ev.Payload)
	msg.Metadata = md
	return msg
}

// decodeData copies the user metadata map into md. A map of strings is the
// format this package writes; another writer may store any CBOR value, so
// string entries are kept and everything else is reported.
//
// md must be empty: it is filled in place.
func decodeData(env codec.Metadata, md message.Metadata, problems []string) []string {
	if err := env.DecodeData(&md); err == nil {
		return problems
	}
	clear(md) // a failed decode may leave some entries
	var anys map[string]any
	if err := env.DecodeData(&anys); err != nil {
		return append(problems, "data is not a map with string keys: "+err.Error())
	}
	var skipped []string
	for k, v := range anys {
		if s, ok := v.(string); ok {
			md[k] = s
		} else {
			skipped = append(skipped, k)
		}
	}
	if len(skipped) > 0 {
		return append(problems, "data values that are not strings were left out: "+strings.Join(skipped, ", "))
	}
	return problems
}
