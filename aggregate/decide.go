package aggregate

import (
	"errors"
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
// what-if questions. The handler's CommandContext has no StreamID.
func (t *Type[S, ID]) Decide(given []GivenEvent, cmd Command, opts ...ExecOption) (Decision, error) {
	o := execOptions{at: time.Now()}
	for _, opt := range opts {
		opt(&o)
	}
	const stream = "" // Decide has no entity, so no stream
	state := t.newState()
	tr := newTracking(newIDPolicy(defaultCommandIDRetention, defaultCommandIDMinimum), t.limits)
	for i, g := range given {
		m := EventMeta{StreamID: stream, Version: uint64(i), Metadata: g.Metadata, Timestamp: o.at.UnixMilli()}
		if err := t.applyNew(state, g.Event, m); err != nil {
			return Decision{}, err
		}
		tr.record(g.Metadata, [16]byte{byte(i), byte(i >> 8), 1}, m.Timestamp, m.Timestamp)
	}
	d := Decision{Version: int64(len(given)) - 1}
	info, err := t.command(cmd)
	if err != nil {
		return d, err
	}
	meta := codec.Metadata{Command: info.name, Causation: o.causation, CorrelationID: o.correlationID, CommandID: o.commandID}
	ctx := &CommandContext{StreamID: stream, Version: d.Version, Time: o.at, Metadata: meta, tracking: tr, started: o.at, clock: time.Now}
	v := decide(info, state, tr, ctx, o)
	if v.err != nil || v.idempotent {
		d.Idempotent = v.idempotent
		return d, v.err
	}
	evs := v.events
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

// verdict is what decide found.
type verdict struct {
	events     []Event
	idempotent bool
	// settled: the answer rests on what only grows (the command ids and
	// the causation an entity has recorded), so a cached state that is
	// behind the stream gives it rightly too.
	settled bool
	err     error
}

// writes reports whether the verdict appends events.
func (v verdict) writes() bool { return v.err == nil && !v.idempotent && len(v.events) > 0 }

// decide runs the checks and the handler, in kameo_es's order with its
// defects fixed: idempotency first (command id, causation, the state
// check), then the caller's expected version, then the rate limit, then
// the handler. A duplicate is therefore never rate limited or rejected,
// and a redelivered command that named an expected version is answered as
// idempotent, not as a version mismatch (tested: TestEntityRateLimit,
// TestRedeliveredCommandWritesOnce, TestExpectVersionRedelivery).
func decide(info *commandInfo, state any, tr *tracking, ctx *CommandContext, o execOptions) verdict {
	m := ctx.Metadata
	if m.CommandID != "" && tr.seenCommand(m.CommandID) {
		return verdict{idempotent: true, settled: true}
	}
	if c := tr.check(m); c == AlreadyProcessed || c == OutOfOrder {
		return verdict{idempotent: true, settled: true}
	}
	if info.idempotent != nil {
		idem, err := callIdempotent(ctx.StreamID, info, state, ctx)
		if err != nil || idem {
			return verdict{idempotent: idem, err: err}
		}
	}
	if !o.expected.IsAny() && !o.expected.Matches(ctx.Version) {
		return verdict{err: &ExpectedVersionError{StreamID: ctx.StreamID, Current: ctx.Version, Expected: o.expected}}
	}
	if l := info.limit; l != nil && tr.countSince(info.name, o.at.Add(-l.Window)) >= l.Max {
		return verdict{err: &RateLimitError{StreamID: ctx.StreamID, Command: info.name, Limit: *l}}
	}
	evs, err := callHandle(ctx.StreamID, info, state, ctx)
	if err != nil {
		var pe *PanicError
		if errors.As(err, &pe) {
			return verdict{err: err}
		}
		return verdict{err: &RejectedError{StreamID: ctx.StreamID, Command: info.name, Err: err}}
	}
	return verdict{events: evs}
}

func callHandle(streamID string, info *commandInfo, state any, ctx *CommandContext) (evs []Event, err error) {
	defer recoverPanic("the handler of command "+info.name, streamID, &err)
	return info.handle(state, ctx)
}

func callIdempotent(streamID string, info *commandInfo, state any, ctx *CommandContext) (idem bool, err error) {
	defer recoverPanic("the idempotency check of command "+info.name, streamID, &err)
	return info.idempotent(state, ctx), nil
}
