package pubsub

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/sierradb"
)

// eventKeys are the keys the publisher does not store among an event's
// Watermill metadata: those it reads into the event (its name, its
// expected version, the envelope fields) and those the subscriber sets from
// the event (its position), so that a consumed message published again does
// not carry its old position into the new event. Every other key, esmill's
// command keys included, is stored and delivered as it is.
func isEventKey(k string) bool {
	switch k {
	case esmill.MetaEventName, esmill.MetaAppendExpectedVersion, esmill.MetaCorrelationID, esmill.MetaCommandID,
		esmill.MetaCausationCommand, esmill.MetaCausationEventID, esmill.MetaCausationStreamID,
		esmill.MetaCausationStreamVersion,
		esmill.MetaEventID, esmill.MetaStreamID, esmill.MetaStreamVersion, esmill.MetaPartitionKey,
		esmill.MetaPartitionID, esmill.MetaPartitionSequence, esmill.MetaTransactionID, esmill.MetaTimestamp,
		esmill.MetaMetadataError, esmill.MetaRedeliveries, esmill.MetaMessageUUID,
		esmill.MetaTraceParent, esmill.MetaTraceState:
		return true
	}
	return false
}

// DefaultEventName is the event name of a message without
// esmill.MetaEventName when [PublisherConfig.EventName] is not set.
const DefaultEventName = "WatermillMessage"

// TimestampFormat is the layout of esmill.MetaTimestamp.
const TimestampFormat = "2006-01-02T15:04:05.000Z07:00"

// EventNameFromMetadata is the default [PublisherConfig.EventName]: the
// value of esmill.MetaEventName, else [DefaultEventName].
func EventNameFromMetadata(_ string, msg *message.Message) string {
	if n := msg.Metadata.Get(esmill.MetaEventName); n != "" {
		return n
	}
	return DefaultEventName
}

// ExpectedVersionFromMetadata is the default
// [PublisherConfig.ExpectedVersion]: it parses
// esmill.MetaAppendExpectedVersion ("empty" or a number), the version the
// topic's stream must be at. ok is false when the key is absent. (A cqrs
// command's expected version, esmill.MetaCommandExpectedVersion, is a check
// on its entity, not on the command topic's stream: it is stored with the
// message like any other key.)
func ExpectedVersionFromMetadata(_ string, msg *message.Message) (v sierradb.ExpectedVersion, ok bool, err error) {
	s, ok := msg.Metadata[esmill.MetaAppendExpectedVersion]
	if !ok {
		return sierradb.ExpectedVersion{}, false, nil
	}
	v, err = sierradb.ParseExpectedVersion(s)
	if err != nil || !(v.IsEmpty() || isExact(v)) {
		return v, true, &MessageError{UUID: msg.UUID, Key: esmill.MetaAppendExpectedVersion,
			Reason: fmt.Sprintf("%q is neither \"empty\" nor a version number", s)}
	}
	return v, true, nil
}

func isExact(v sierradb.ExpectedVersion) bool {
	_, ok := v.Exact()
	return ok
}

// encodeMetadata builds the event metadata of a message: the envelope
// fields from their keys, and every key that is not an event key (see
// isEventKey) plus the UUID as a CBOR map of strings under data.
func encodeMetadata(msg *message.Message) ([]byte, error) {
	var env codec.Metadata
	data := make(map[string]string, len(msg.Metadata)+1)
	for k, v := range msg.Metadata {
		if !isEventKey(k) {
			data[k] = v
		}
	}
	if msg.UUID != "" {
		data[esmill.MetaMessageUUID] = msg.UUID
	}
	md := msg.Metadata
	env.CorrelationID = md[esmill.MetaCorrelationID]
	env.CommandID = md[esmill.MetaCommandID]
	env.Command = md[esmill.MetaCausationCommand]
	env.TraceParent, env.TraceState = md[esmill.MetaTraceParent], md[esmill.MetaTraceState]
	eid, hasEID := md[esmill.MetaCausationEventID]
	sid, hasSID := md[esmill.MetaCausationStreamID]
	ver, hasVer := md[esmill.MetaCausationStreamVersion]
	if hasEID || hasSID || hasVer {
		bad := func(key, reason string, err error) error {
			return &MessageError{UUID: msg.UUID, Key: key, Reason: reason, Err: err}
		}
		if !hasEID || !hasSID || !hasVer {
			return nil, bad(esmill.MetaCausationEventID, "causation needs the event id, stream id and stream version together", nil)
		}
		id, err := uuid.Parse(eid)
		if err != nil {
			return nil, bad(esmill.MetaCausationEventID, "not a UUID", err)
		}
		v, err := strconv.ParseUint(ver, 10, 64)
		if err != nil {
			return nil, bad(esmill.MetaCausationStreamVersion, "not a version number", err)
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
// cannot be read is reported under esmill.MetaMetadataError (tested:
// TestSubscribeForeignEvents).
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
				id = md[esmill.MetaMessageUUID]
				delete(md, esmill.MetaMessageUUID)
			}
			if env.Command != "" {
				md[esmill.MetaCausationCommand] = env.Command
			}
			if c := env.Causation; c != nil {
				md[esmill.MetaCausationEventID] = c.EventID.String()
				md[esmill.MetaCausationStreamID] = c.StreamID
				md[esmill.MetaCausationStreamVersion] = strconv.FormatUint(c.StreamVersion, 10)
			}
			if env.CorrelationID != "" {
				md[esmill.MetaCorrelationID] = env.CorrelationID
			}
			if env.CommandID != "" {
				md[esmill.MetaCommandID] = env.CommandID
			}
			if env.TraceParent != "" {
				md[esmill.MetaTraceParent] = env.TraceParent
			}
			if env.TraceState != "" {
				md[esmill.MetaTraceState] = env.TraceState
			}
			if env.EventVersion > 1 {
				md[esmill.MetaEventVersion] = strconv.Itoa(env.EventVersion)
			}
		}
	}
	eventID := ev.ID.String()
	if id == "" {
		id = eventID
	}
	md[esmill.MetaEventID] = eventID
	md[esmill.MetaEventName] = ev.Name
	md[esmill.MetaStreamID] = ev.StreamID
	md[esmill.MetaStreamVersion] = strconv.FormatUint(ev.StreamVersion, 10)
	md[esmill.MetaPartitionKey] = ev.PartitionKey.String()
	md[esmill.MetaPartitionID] = strconv.FormatUint(uint64(ev.PartitionID), 10)
	md[esmill.MetaPartitionSequence] = strconv.FormatUint(ev.PartitionSequence, 10)
	md[esmill.MetaTransactionID] = ev.TransactionID.String()
	md[esmill.MetaTimestamp] = ev.Timestamp.UTC().Format(TimestampFormat)
	if len(problems) > 0 {
		md[esmill.MetaMetadataError] = strings.Join(problems, "; ")
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
