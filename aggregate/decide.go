package aggregate

import (
	"time"

	"github.com/esmill/esmill/codec"
)

// Decision is the outcome of [Type.Decide].
type Decision struct {
	// Events are the events the command produced.
	Events []Event
	// Idempotent: the command would not run (state check or causation).
	Idempotent bool
	// Version is the version the given events built (-1 for none).
	Version int64
}

// Decide runs a command against the state built from the given events,
// with no store: the same checks and handler as [Entities.Execute], minus
// the write. Given events carry the metadata of given commands, if any
// (see [GivenEvent]). It is what aggregatetest builds on, and useful for
// what-if questions.
func (t *Type[S, ID]) Decide(given []GivenEvent, cmd Command, opts ...ExecOption) (Decision, error) {
	o := execOptions{at: time.Now()}
	for _, opt := range opts {
		opt(&o)
	}
	const stream = "decide"
	state := t.newState()
	tr := newTracking(256)
	for i, g := range given {
		m := EventMeta{StreamID: stream, Version: uint64(i), Metadata: g.Metadata, Timestamp: o.at.UnixMilli()}
		if err := t.applyNew(state, g.Event, m); err != nil {
			return Decision{}, err
		}
		tr.record(g.Metadata, [16]byte{byte(i), byte(i >> 8), 1}, m.Timestamp)
	}
	d := Decision{Version: int64(len(given)) - 1}
	info, err := t.command(cmd)
	if err != nil {
		return d, err
	}
	meta := codec.Metadata{Command: info.name, Causation: o.causation, CorrelationID: o.correlationID, CommandID: o.commandID}
	ctx := &CommandContext{StreamID: stream, Version: d.Version, Time: o.at, Metadata: meta, tracking: tr, started: o.at, clock: time.Now}
	evs, idem, err := decide(info, state, tr, ctx, o)
	if err != nil || idem {
		d.Idempotent = idem
		return d, err
	}
	for _, ev := range evs {
		if _, _, err := t.EncodeEvent(ev); err != nil {
			return d, err
		}
	}
	d.Events = evs
	return d, nil
}

// GivenEvent is a past event for [Type.Decide], with the metadata of the
// command that produced it.
type GivenEvent struct {
	Event    Event
	Metadata codec.Metadata
}
