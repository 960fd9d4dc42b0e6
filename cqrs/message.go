package cqrs

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/fxamacker/cbor/v2"
	"github.com/google/uuid"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/sierradb"
)

// ErrBadCommand is matched by every error about a command message that
// cannot be decoded or routed. Such errors are poison (esmill.Classify).
var ErrBadCommand = esmill.MarkPoison(errors.New("cqrs: bad command message"))

// BadCommandError describes a command message that cannot be handled.
type BadCommandError struct {
	MessageUUID string
	Reason      string
	Err         error
}

func (e *BadCommandError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("cqrs: command message %s: %s: %v", e.MessageUUID, e.Reason, e.Err)
	}
	return fmt.Sprintf("cqrs: command message %s: %s", e.MessageUUID, e.Reason)
}

// ErrorClass is [esmill.Poison].
func (e *BadCommandError) ErrorClass() esmill.Class { return esmill.Poison }

func (e *BadCommandError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrBadCommand}
	}
	return []error{ErrBadCommand, e.Err}
}

// SendOption adjusts one command message.
type SendOption func(*sendOptions)

type sendOptions struct {
	causation     *codec.Causation
	correlationID string
	expected      *sierradb.ExpectedVersion
	partitionKey  *uuid.UUID
	at            time.Time
	data          any
	messageUUID   string
	metadata      map[string]string
	newCommand    bool
}

func applySendOptions(opts []SendOption) sendOptions {
	var o sendOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// CausedBy names the event that caused the command (see aggregate.CausedBy).
func CausedBy(c codec.Causation) SendOption { return func(o *sendOptions) { o.causation = &c } }

// CausedByEvent is CausedBy with a stored event.
func CausedByEvent(ev sierradb.Event) SendOption {
	return CausedBy(codec.Causation{EventID: ev.ID, StreamID: ev.StreamID, StreamVersion: ev.StreamVersion})
}

// WithCorrelationID sets the correlation id. Default: a new one.
func WithCorrelationID(id string) SendOption { return func(o *sendOptions) { o.correlationID = id } }

// WithExpectedVersion runs the command only if the entity is at this
// version (see aggregate.WithExpectedVersion). It travels as
// esmill.MetaCommandExpectedVersion, a check on the entity, never on the
// stream or topic the message goes through (tested:
// TestCommandThroughSierraDBPubSub).
func WithExpectedVersion(v sierradb.ExpectedVersion) SendOption {
	return func(o *sendOptions) { o.expected = &v }
}

// OnPartitionKey sets the entity's partition key for this command.
func OnPartitionKey(k uuid.UUID) SendOption { return func(o *sendOptions) { o.partitionKey = &k } }

// At sets the command's logical time.
func At(t time.Time) SendOption { return func(o *sendOptions) { o.at = t } }

// WithData attaches the caller's data, stored with the command's events
// (see aggregate.WithData).
func WithData(v any) SendOption { return func(o *sendOptions) { o.data = v } }

// WithCommandID sets the command's id, which is its message's UUID:
// sending the same id twice runs the command once (within the executor's
// aggregate.Config.CommandIDRetention). Derive it once per logical call
// (from a request's idempotency key, say) and reuse it for every retry,
// from any process. Default: a new id, or, for an Execute that retries a
// call whose outcome was unknown, that call's id.
func WithCommandID(id string) SendOption { return func(o *sendOptions) { o.messageUUID = id } }

// WithMessageUUID is WithCommandID: the message UUID is the command's id.
func WithMessageUUID(id string) SendOption { return WithCommandID(id) }

// AsNewCommand makes Execute send a new command even when an identical
// one to the same entity ended without a reply a moment ago (see
// CommandBus.Execute): use it when the caller means a second command.
func AsNewCommand() SendOption { return func(o *sendOptions) { o.newCommand = true } }

// WithMessageMetadata sets a Watermill metadata key of the message (a
// tenant for a rate limit, say). esmill's own keys are set after it and
// win.
func WithMessageMetadata(key, value string) SendOption {
	return func(o *sendOptions) {
		if o.metadata == nil {
			o.metadata = map[string]string{}
		}
		o.metadata[key] = value
	}
}

// NewCommandMessage encodes a command for entity id (the id's string form)
// of type t.
func NewCommandMessage(t aggregate.AnyType, id string, cmd aggregate.Command, opts ...SendOption) (*message.Message, error) {
	o := applySendOptions(opts)
	return newCommandMessage(t, id, cmd, &o)
}

// newCommandMessage encodes a command; it fills o's message UUID and
// correlation id when they are empty.
func newCommandMessage(t aggregate.AnyType, id string, cmd aggregate.Command, o *sendOptions) (*message.Message, error) {
	payload, err := codec.Marshal(t.Format(), cmd)
	if err != nil {
		return nil, fmt.Errorf("cqrs: encode %s: %w", cmd.CommandName(), err)
	}
	if o.messageUUID == "" {
		o.messageUUID = watermill.NewUUID()
	}
	msg := message.NewMessage(o.messageUUID, payload)
	for k, v := range o.metadata {
		msg.Metadata.Set(k, v)
	}
	msg.Metadata.Set(esmill.MetaCommand, cmd.CommandName())
	msg.Metadata.Set(esmill.MetaCategory, t.Category())
	msg.Metadata.Set(esmill.MetaEntityID, id)
	msg.Metadata.Set(esmill.MetaFormat, t.Format().String())
	if c := o.causation; c != nil {
		msg.Metadata.Set(esmill.MetaCausationEventID, c.EventID.String())
		msg.Metadata.Set(esmill.MetaCausationStreamID, c.StreamID)
		msg.Metadata.Set(esmill.MetaCausationStreamVersion, strconv.FormatUint(c.StreamVersion, 10))
	}
	if o.correlationID == "" {
		o.correlationID = watermill.NewUUID()
	}
	msg.Metadata.Set(esmill.MetaCorrelationID, o.correlationID)
	if o.expected != nil {
		msg.Metadata.Set(esmill.MetaCommandExpectedVersion, o.expected.String())
	}
	if o.partitionKey != nil {
		msg.Metadata.Set(esmill.MetaCommandPartitionKey, o.partitionKey.String())
	}
	if !o.at.IsZero() {
		msg.Metadata.Set(esmill.MetaCommandTime, o.at.UTC().Format(time.RFC3339Nano))
	}
	if o.data != nil {
		b, err := codec.EncodeData(o.data)
		if err != nil {
			return nil, err
		}
		msg.Metadata.Set(esmill.MetaCommandData, base64.StdEncoding.EncodeToString(b))
	}
	return msg, nil
}

// decoded is a command message taken apart.
type decoded struct {
	typ  aggregate.AnyType
	id   string
	cmd  aggregate.Command
	opts []aggregate.ExecOption
}

// decodeCommand reads a command message for one of the given types.
func decodeCommand(msg *message.Message, types map[string]aggregate.AnyType) (decoded, error) {
	bad := func(reason string, err error) (decoded, error) {
		return decoded{}, &BadCommandError{MessageUUID: msg.UUID, Reason: reason, Err: err}
	}
	md := msg.Metadata
	var missing []string
	for _, k := range []string{esmill.MetaCategory, esmill.MetaEntityID, esmill.MetaCommand} {
		if md.Get(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return bad(fmt.Sprintf("metadata %s missing: is this a command message? Send commands with cqrs.CommandBus or build them with cqrs.NewCommandMessage",
			strings.Join(missing, ", ")), nil)
	}
	category := md.Get(esmill.MetaCategory)
	t, ok := types[category]
	if !ok {
		known := slices.Sorted(maps.Keys(types))
		return bad(fmt.Sprintf("no entity type for category %q (metadata %s): this router handles %s; add the type to RouterConfig.Types",
			category, esmill.MetaCategory, strings.Join(known, ", ")), nil)
	}
	f := codec.CBOR
	switch md.Get(esmill.MetaFormat) {
	case "", "cbor":
	case "json":
		f = codec.JSON
	default:
		return bad(fmt.Sprintf("unknown payload format %q (metadata %s): use \"cbor\" or \"json\"", md.Get(esmill.MetaFormat), esmill.MetaFormat), nil)
	}
	cmd, err := t.DecodeCommand(md.Get(esmill.MetaCommand), f, msg.Payload)
	if err != nil {
		reason := "command does not decode"
		if md.Get(esmill.MetaFormat) == "" && looksLikeJSON(msg.Payload) {
			reason = fmt.Sprintf("command does not decode as CBOR, the format of a message without %s metadata; "+
				"its payload looks like JSON: set %s to \"json\"", esmill.MetaFormat, esmill.MetaFormat)
		}
		return bad(reason, err)
	}
	d := decoded{typ: t, id: md.Get(esmill.MetaEntityID), cmd: cmd}
	d.opts = append(d.opts, aggregate.WithCommandID(msg.UUID))
	if v := md.Get(esmill.MetaCausationStreamID); v != "" {
		eid, err := uuid.Parse(md.Get(esmill.MetaCausationEventID))
		if err != nil {
			return bad("metadata "+esmill.MetaCausationEventID+" is not a UUID", err)
		}
		ver, err := strconv.ParseUint(md.Get(esmill.MetaCausationStreamVersion), 10, 64)
		if err != nil {
			return bad("metadata "+esmill.MetaCausationStreamVersion+" is not a version number", err)
		}
		d.opts = append(d.opts, aggregate.CausedBy(codec.Causation{EventID: eid, StreamID: v, StreamVersion: ver}))
	}
	if v := md.Get(esmill.MetaCorrelationID); v != "" {
		d.opts = append(d.opts, aggregate.WithCorrelationID(v))
	}
	if v := md.Get(esmill.MetaCommandExpectedVersion); v != "" {
		ev, err := sierradb.ParseExpectedVersion(v)
		if err != nil {
			return bad("metadata "+esmill.MetaCommandExpectedVersion+" is not \"empty\", \"exists\" or a version number", err)
		}
		d.opts = append(d.opts, aggregate.WithExpectedVersion(ev))
	}
	if v := md.Get(esmill.MetaCommandPartitionKey); v != "" {
		k, err := uuid.Parse(v)
		if err != nil {
			return bad("metadata "+esmill.MetaCommandPartitionKey+" is not a UUID", err)
		}
		d.opts = append(d.opts, aggregate.OnPartitionKey(k))
	}
	if v := md.Get(esmill.MetaCommandTime); v != "" {
		at, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return bad("metadata "+esmill.MetaCommandTime+" is not an RFC 3339 time", err)
		}
		d.opts = append(d.opts, aggregate.At(at))
	}
	if v := md.Get(esmill.MetaCommandData); v != "" {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return bad("metadata "+esmill.MetaCommandData+" is not base64", err)
		}
		d.opts = append(d.opts, aggregate.WithData(cbor.RawMessage(b)))
	}
	return d, nil
}

// looksLikeJSON reports whether a payload starts like a JSON object or
// array, for the hint on a payload read in the wrong format.
func looksLikeJSON(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && (b[0] == '{' || b[0] == '[') && json.Valid(b)
}

// PartitionOf returns the topic partition of an entity stream: FNV-1a of
// the stream id modulo the partition count.
func PartitionOf(streamID string, partitions int) int {
	h := fnv.New32a()
	h.Write([]byte(streamID))
	return int(h.Sum32() % uint32(partitions))
}

// OrderKey returns the key that keeps a command message in order with the
// other commands of its entity: its stream id (category and entity id,
// from the message's metadata). Give it to a subscriber that handles
// messages of one topic side by side, such as
// redispart.SubscriberConfig.OrderKey with MaxInFlight above 1: commands
// of one entity then run one at a time in the order they were sent,
// those of different entities of the partition side by side.
func OrderKey(msg *message.Message) string {
	return msg.Metadata.Get(esmill.MetaCategory) + "-" + msg.Metadata.Get(esmill.MetaEntityID)
}

// DefaultTopic names the topic of one partition of an entity type's
// commands: "esmill.commands.<category>.<n>".
func DefaultTopic(category string, partition int) string {
	return "esmill.commands." + category + "." + strconv.Itoa(partition)
}

// Reply is the outcome of a command, as sent back to the caller.
//
// Version follows one rule whichever layer answers: it is the entity's
// version after the command, as far as that layer knows it.
//
//   - Success: the version of the command's last event.
//   - Idempotent (the executor recognised the command) or an error from the
//     entity (a rejection, a wrong expected version, a rate limit): the
//     entity's current version; nothing was written.
//   - -1: the entity has no event yet, or the layer that answered does not
//     know its version: the Dedup middleware's idempotent reply, a message
//     that did not decode, a failure before the entity was loaded.
//
// Version is never 0 for "unknown": 0 is the version of an entity's first
// event (tested: TestHandleOutcomes).
type Reply struct {
	StreamID   string       `json:"stream_id,omitempty"`
	Version    int64        `json:"version"`
	Idempotent bool         `json:"idempotent,omitempty"`
	Events     []ReplyEvent `json:"events,omitempty"`
	Error      *RemoteError `json:"error,omitempty"`
}

// ReplyEvent is one appended event in a [Reply].
type ReplyEvent struct {
	ID                uuid.UUID `json:"id"`
	Name              string    `json:"name"`
	Version           uint64    `json:"version"`
	PartitionID       uint16    `json:"partition_id"`
	PartitionSequence uint64    `json:"partition_sequence"`
}

func replyFromResult(res aggregate.Result) Reply {
	r := Reply{StreamID: res.StreamID, Version: res.Version, Idempotent: res.Idempotent}
	for _, a := range res.Events {
		r.Events = append(r.Events, ReplyEvent{ID: a.ID, Name: a.Event.EventName(), Version: a.Version, PartitionID: a.PartitionID, PartitionSequence: a.PartitionSequence})
	}
	return r
}

func replyFromFailure(res aggregate.Result, err error) Reply {
	return Reply{StreamID: res.StreamID, Version: res.Version, Error: remoteError(err)}
}

// IdempotentReply is the reply to a command recognised as a duplicate
// before it reached the executor (see the Dedup middleware): the entity's
// version is not known, so Version is -1.
func IdempotentReply(streamID string) Reply {
	return Reply{StreamID: streamID, Version: -1, Idempotent: true}
}
