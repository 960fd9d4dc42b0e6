package aggregate

import (
	"context"
	"errors"
	"time"

	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/internal/telemetry"
	"github.com/esmill/esmill/sierradb"
)

// write is the second half of attempt: it encodes the decided events and
// appends them at the entity's version (or, for a dry run, makes up their
// positions). retry says the append met a concurrent write (or failed
// transiently) and the entity must be caught up before the next round;
// again is attempt's.
func (x *Executor) write(ctx context.Context, k kind, e *entity, evs []Event, meta codec.Metadata, metaBytes []byte, o execOptions, res Result, again bool) (Result, bool, error) {
	news := make([]sierradb.NewEvent, len(evs))
	for i, ev := range evs {
		name, payload, md, err := k.encodeStored(ev, meta, metaBytes)
		if err != nil {
			return res, false, err
		}
		news[i] = sierradb.NewEvent{
			StreamID: e.streamID, Name: name, ID: sierradb.NewEventID(e.key),
			ExpectedVersion: sierradb.ExpectAfter(e.version + int64(i)),
			Timestamp:       o.at, Payload: payload, Metadata: md,
		}
	}
	if o.dryRun {
		res.DryRun = true
		for i, ev := range evs {
			res.Events = append(res.Events, Appended{Event: ev, ID: news[i].ID, Version: uint64(e.version + int64(i) + 1), Timestamp: o.at.Truncate(time.Millisecond)})
		}
		res.Version = e.version + int64(len(evs))
		return res, false, nil
	}
	if f := o.fence; f != nil && !f.Valid() {
		e.fenced = false
		return res, false, &FenceLostError{StreamID: e.streamID, Scope: f.Scope, Token: f.Token}
	}
	// The append gets a span of its own when it fails or the command runs
	// again (see lateSpan); otherwise the command's span tells it.
	as := x.tel.late(ctx, "append")
	ar, err := x.appendFor(ctx, k, e.key, news)
	if err != nil || again {
		as.open()
		if as.opened() {
			as.span.SetAttributes(telemetry.Events.Int(len(news)), telemetry.Version.Int64(e.version))
		}
		as.end(err)
	}
	if err != nil {
		var wv *sierradb.WrongExpectedVersionError
		switch {
		case errors.Is(err, errAbandoned) || ctx.Err() != nil && !errors.As(err, &wv):
			// The append was sent; whether it was stored is unknown.
			// Reload before the next command.
			e.reset()
			return res, false, &OutcomeUnknownError{StreamID: e.streamID, CommandID: meta.CommandID, Err: ctx.Err()}
		case errors.As(err, &wv):
			// Another writer got there first: catch up (waiting to see
			// at least the version the server reported) and run again.
			// The state is intact: nothing of this attempt was applied.
			e.stale = true
			if wv.Parsed {
				e.minVersion = wv.Current
			}
			return res, true, err
		case ctx.Err() == nil && sierradb.IsRetryable(err):
			// The outcome is unknown. Catch up and run again with the
			// same command id: if the first try was stored, catching up
			// sees its id and the command is idempotent. (If it is
			// stored but not yet visible, the retry's append conflicts
			// and the next catch-up waits for it.)
			e.stale = true
			return res, true, err
		}
		e.reset()
		return res, false, err
	}
	if err := x.applyAppended(k, e, evs, meta, ar, &res); err != nil {
		return res, false, err
	}
	// The state is exactly what the stream holds up to this append; the
	// fence, checked just before it, still covers it.
	e.markFence(o.fence, o.fence != nil)
	x.maybeSnapshot(ctx, k, e)
	return res, false, nil
}
