package aggregate

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/internal/telemetry"
	"github.com/esmill/esmill/sierradb"
)

// ExecOption adjusts one command.
type ExecOption func(*execOptions)

type execOptions struct {
	expected      sierradb.ExpectedVersion
	causation     *codec.Causation
	data          any
	hasData       bool
	at            time.Time
	partitionKey  *uuid.UUID
	correlationID string
	commandID     string
	dryRun        bool
	fence         *Fence
}

// WithExpectedVersion runs the command only if the entity is at this
// version (sierradb.ExpectVersion(n), sierradb.ExpectEmpty,
// sierradb.ExpectExists); otherwise it fails with an
// [*ExpectedVersionError].
func WithExpectedVersion(v sierradb.ExpectedVersion) ExecOption {
	return func(o *execOptions) { o.expected = v }
}

// CausedBy names the event that caused the command. The entity then runs
// the command only once per causing event and command name, and skips
// causing events older than one it has handled from the same stream.
func CausedBy(c codec.Causation) ExecOption {
	return func(o *execOptions) { o.causation = &c }
}

// CausedByEvent is [CausedBy] with a stored event.
func CausedByEvent(ev sierradb.Event) ExecOption {
	return CausedBy(codec.Causation{EventID: ev.ID, StreamID: ev.StreamID, StreamVersion: ev.StreamVersion})
}

// WithData attaches the caller's data (kameo_es's metadata data), encoded
// as CBOR and stored with every event of the command.
func WithData(v any) ExecOption {
	return func(o *execOptions) { o.data, o.hasData = v, true }
}

// At sets the command's logical time, which becomes the events' timestamp
// (milliseconds). Default: now.
func At(t time.Time) ExecOption {
	return func(o *execOptions) { o.at = t }
}

// OnPartitionKey overrides the entity's partition key for this command. It
// must be the key the entity's stream was started with.
func OnPartitionKey(key uuid.UUID) ExecOption {
	return func(o *execOptions) { o.partitionKey = &key }
}

// WithCorrelationID ties the events to a conversation across services.
func WithCorrelationID(id string) ExecOption {
	return func(o *execOptions) { o.correlationID = id }
}

// WithCommandID identifies this command (typically the id of the message
// that carried it). A command whose id the entity has recently seen is not
// run again: the result is idempotent. Default: a new random id, which
// still protects the executor's own retries.
func WithCommandID(id string) ExecOption {
	return func(o *execOptions) { o.commandID = id }
}

// DryRun computes the events without writing or applying them.
func DryRun() ExecOption {
	return func(o *execOptions) { o.dryRun = true }
}

// prepared is a command ready to run: what Executor.execute and
// Tx.execute both do before they lock the entity.
type prepared struct {
	opts      execOptions
	key       uuid.UUID
	info      *commandInfo
	meta      codec.Metadata
	metaBytes []byte
}

// prepare checks the stream id, applies the options (the partition key
// they name wins over key), finds the command's handler and encodes the
// metadata its events will carry, with the trace context of traced, if
// any. newID gives the command id when the options give
// none.
func prepare(traced context.Context, now time.Time, k kind, streamID string, key uuid.UUID, cmd Command, opts []ExecOption, newID func() string) (prepared, error) {
	if err := sierradb.ValidateStreamID(streamID); err != nil {
		return prepared{}, fmt.Errorf("%w: %w", ErrInvalidID, err)
	}
	p := prepared{opts: execOptions{at: now}, key: key}
	for _, opt := range opts {
		opt(&p.opts)
	}
	o := &p.opts
	if o.partitionKey != nil {
		p.key = *o.partitionKey
	}
	info, err := k.command(cmd)
	if err != nil {
		return prepared{}, err
	}
	p.info = info
	if o.commandID == "" {
		o.commandID = newID()
	}
	p.meta = codec.Metadata{Command: info.name, Causation: o.causation, CorrelationID: o.correlationID, CommandID: o.commandID}
	if o.hasData {
		if p.meta.Data, err = codec.EncodeData(o.data); err != nil {
			return prepared{}, fmt.Errorf("aggregate: %s: the command's data does not encode as CBOR: %w", info.name, err)
		}
	}
	// The events carry the command's span, so that their consumers
	// continue its trace.
	telemetry.InjectEnvelope(traced, &p.meta)
	if p.metaBytes, err = codec.EncodeMetadata(p.meta); err != nil {
		return prepared{}, err
	}
	return p, nil
}
