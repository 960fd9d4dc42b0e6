package readmodel

// Parked events, resolved: listed, shown, replayed through the
// projection's handlers or skipped, each exactly once, and the events held
// behind them released in stream order (tested: TestContract, whose cases
// ReplayAndSkip and UnparkOnce check it).

import (
	"context"
	"errors"
	"fmt"

	"github.com/esmill/esmill/sierradb"
)

// Admin resolves the parked events of one projection: [Admin.List] and
// [Admin.Show] them, [Admin.Replay] them through the projection's handlers
// once they are fixed, or [Admin.Skip] them, each with who did it and why
// ([Store.Resolved] keeps the record). It works without a running runner,
// from another process too (an admin tool that builds the projection's
// Config), on every store but memory while a runner of the projection
// runs elsewhere in the process: memory replaces its whole model per
// transaction without a lock, so use [Runner.Replay] and [Runner.Skip]
// there (the file store locks each transaction, across processes too). Its
// transactions never run beside a batch of the event's partition, whichever
// instance owns it (tested: TestReplayWaitsForTheOwnersBatch in package
// postgres).
//
// Replaying or skipping the first parked event of a stream releases the
// events held behind it ([CauseHeld], see [Config.Hold]): they are applied
// in stream order, each in its own transaction, until one fails (it stays
// parked, now as the stream's first) or none is left.
type Admin[T any] struct {
	cfg Config[T]
	// r prepares events for the handlers; it is not started.
	r *Runner[T]
	// lock serialises the admin's transactions with a runner's batches
	// (the runner's own admin); nil otherwise.
	lock func() (unlock func())
	// changed tells the runner's held streams what a resolution did.
	changed func(stream string, first *ParkedEvent)
	// claim marks a stream as being resolved by this admin, so that the
	// runner does not release it at the same time; nil when not the
	// runner's.
	claim func(stream string) (done func(), ok bool)
}

// NewAdmin returns the admin of the projection cfg describes. It needs
// Name and Store. Handlers are needed only to replay: without them List,
// Show, Resolved and Skip work and Replay fails with [ErrNoHandlers] (an
// admin tool that does not link the projection's code can still inspect
// and skip). Client is optional: with it a replayed event is read back
// from SierraDB, so that handlers see its Timestamp and TransactionID,
// which the parked copy does not keep. Logger and Now are used as by a
// runner; the other fields are ignored.
func NewAdmin[T any](cfg Config[T]) (*Admin[T], error) {
	var errs []error
	if err := ValidateName(cfg.Name); err != nil {
		errs = append(errs, err)
	}
	if cfg.Store == nil {
		errs = append(errs, errors.New("readmodel: Store is required"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	cfg.setDefaults()
	a := &Admin[T]{cfg: cfg}
	if len(cfg.Handlers) > 0 {
		disp, err := newDispatch(cfg.Handlers)
		if err != nil {
			return nil, err
		}
		a.r = &Runner[T]{cfg: cfg, disp: disp}
	}
	return a, nil
}

// ErrNoHandlers: [Admin.Replay] was called on an admin made without the
// projection's handlers. The error is a [*NoHandlersError].
var ErrNoHandlers = errors.New("readmodel: the admin has no handlers to replay with")

// NoHandlersError refuses a replay on an admin built without handlers:
// replaying applies the event through the projection's handlers, so it
// must run in a program that links them.
//
// It also refuses to skip the first parked event of a stream with held
// events behind it ([CauseHeld]): the skip would release them, and they
// are applied through the handlers.
type NoHandlersError struct {
	Projection string
	Position   Position
	// Held says that the refused call was a skip with held events behind
	// the event.
	Held bool
}

func (e *NoHandlersError) Error() string {
	if e.Held {
		return fmt.Sprintf("readmodel: projection %q: skipping %s would release the events held behind it, which needs the projection's handlers: skip it from a program that builds the projection's Config with its Handlers",
			e.Projection, e.Position)
	}
	return fmt.Sprintf("readmodel: projection %q: cannot replay %s without the projection's handlers: replay it from a program that builds the projection's Config with its Handlers (or skip it)",
		e.Projection, e.Position)
}

// Is reports whether target is [ErrNoHandlers].
func (e *NoHandlersError) Is(target error) bool { return target == ErrNoHandlers }

// ReplayError is a replay whose event failed again: it does not decode,
// or a handler returned an error. Nothing of it was applied; the event
// stays parked, its cause, reason and attempts updated.
type ReplayError struct {
	Projection string
	Event      ParkedEvent
	Err        error
}

func (e *ReplayError) Error() string {
	return fmt.Sprintf("readmodel: projection %q: replaying %s (%s %s v%d) failed: %v; it stays parked: fix the handler and replay it again, or skip it",
		e.Projection, e.Event.Position, e.Event.StreamID, e.Event.Name, e.Event.StreamVersion, e.Err)
}

func (e *ReplayError) Unwrap() error { return e.Err }

// ErrNotFirst: an event cannot be replayed while an earlier event of its
// stream is parked. The error is a [*NotFirstError].
var ErrNotFirst = errors.New("readmodel: an earlier event of the stream is parked")

// NotFirstError refuses to replay a parked event ahead of an earlier
// parked event of its stream: it would be applied out of order.
type NotFirstError struct {
	Projection string
	Position   Position
	StreamID   string
	// First is the stream's first parked event, to replay or skip first.
	First Position
}

func (e *NotFirstError) Error() string {
	return fmt.Sprintf("readmodel: projection %q: %s cannot be replayed before %s, an earlier parked event of stream %s: replay or skip %s first",
		e.Projection, e.Position, e.First, e.StreamID, e.First)
}

// Is reports whether target is [ErrNotFirst].
func (e *NotFirstError) Is(target error) bool { return target == ErrNotFirst }

// Outcome is what a replay or a skip did.
type Outcome struct {
	// Event is the event replayed or skipped.
	Event ParkedEvent
	// Released are the events held behind it that were applied, in
	// stream order.
	Released []Position
	// Blocked is the held event whose replay failed during the release,
	// if any: it stays parked, as the stream's first, with the failure
	// as its reason; the events behind it stay held.
	Blocked *ParkedEvent
	// BlockedErr is why Blocked failed.
	BlockedErr error
}

// List returns the projection's parked events in position order.
func (a *Admin[T]) List(ctx context.Context) ([]ParkedEvent, error) {
	return a.cfg.Store.Parked(ctx, a.cfg.Name)
}

// Show returns the event parked at pos, or an error matching
// [ErrNotParked].
func (a *Admin[T]) Show(ctx context.Context, pos Position) (ParkedEvent, error) {
	evs, err := a.List(ctx)
	if err != nil {
		return ParkedEvent{}, err
	}
	for _, ev := range evs {
		if ev.Position == pos {
			return ev, nil
		}
	}
	return ParkedEvent{}, &NotParkedError{Projection: a.cfg.Name, Position: pos}
}

// Resolved returns the record of the projection's replayed and skipped
// events.
func (a *Admin[T]) Resolved(ctx context.Context) ([]ResolvedEvent, error) {
	return a.cfg.Store.Resolved(ctx, a.cfg.Name)
}

// Replay applies the event parked at pos through the projection's handlers
// (fixed since it was parked) in one store transaction that also takes it
// off the parked list, so it is applied exactly once (tested:
// TestContract, whose cases ReplayAndSkip and UnparkOnce check it), then
// releases the events held behind it. by and note say who and why.
//
// Errors: [ErrNoHandlers] for an admin made without handlers;
// [ErrNotParked]; [ErrNotFirst] when an earlier event of its stream is
// parked; a [*ReplayError] when it fails again (it stays parked); store
// errors.
func (a *Admin[T]) Replay(ctx context.Context, pos Position, by, note string) (Outcome, error) {
	if a.r == nil {
		return Outcome{}, &NoHandlersError{Projection: a.cfg.Name, Position: pos}
	}
	return a.resolve(ctx, pos, Replayed, by, note)
}

// Skip takes the event parked at pos off the parked list without applying
// it, recording who skipped it and why, then, if it was the first parked
// event of its stream, releases the events held behind it.
func (a *Admin[T]) Skip(ctx context.Context, pos Position, by, note string) (Outcome, error) {
	return a.resolve(ctx, pos, Skipped, by, note)
}

func (a *Admin[T]) resolve(ctx context.Context, pos Position, action Action, by, note string) (Outcome, error) {
	evs, err := a.List(ctx)
	if err != nil {
		return Outcome{}, err
	}
	// ev is the event; first, an earlier parked event of its stream (a
	// stream lives in one partition, so position order is stream order).
	var ev, first *ParkedEvent
	for i := range evs {
		if evs[i].Position == pos {
			ev = &evs[i]
			break
		}
	}
	if ev == nil {
		return Outcome{}, &NotParkedError{Projection: a.cfg.Name, Position: pos}
	}
	for i := range evs {
		if evs[i].StreamID == ev.StreamID && before(evs[i].Position, pos) {
			first = &evs[i]
			break
		}
	}
	if first != nil && action == Replayed {
		return Outcome{}, &NotFirstError{Projection: a.cfg.Name, Position: pos, StreamID: ev.StreamID, First: first.Position}
	}
	if a.r == nil && first == nil && heldBehind(evs, *ev) {
		// Skipping it would release the held events behind it, which
		// are applied through the handlers.
		return Outcome{}, &NoHandlersError{Projection: a.cfg.Name, Position: pos, Held: true}
	}
	if a.claim != nil {
		if done, ok := a.claim(ev.StreamID); ok {
			defer done()
		}
	}
	res := Resolution{Action: action, By: by, Note: note, At: a.cfg.Now().UTC()}
	done, err := a.applyParked(ctx, *ev, res)
	if err != nil {
		return Outcome{}, err
	}
	out := Outcome{Event: done}
	a.cfg.Logger.Info("readmodel: parked event "+string(action), "projection", a.cfg.Name, "position", pos.String(),
		"stream", done.StreamID, "event", done.Name, "by", by, "note", note)
	if first != nil {
		// An earlier parked event still holds the stream.
		return out, nil
	}
	how := fmt.Sprintf("held behind %s, which was %s", pos, action)
	err = a.release(ctx, done.StreamID, by, how, &out)
	return out, err
}

// maxReleaseConflicts bounds the transactions of a release that may meet
// another transaction of the projection.
const maxReleaseConflicts = 100

// heldBehind reports whether a held event of ev's stream is parked after
// ev.
func heldBehind(evs []ParkedEvent, ev ParkedEvent) bool {
	for _, e := range evs {
		if e.StreamID == ev.StreamID && e.Cause == CauseHeld && before(ev.Position, e.Position) {
			return true
		}
	}
	return false
}

func before(a, b Position) bool {
	return a.Partition < b.Partition || (a.Partition == b.Partition && a.Sequence < b.Sequence)
}

// release applies, in order, the held events at the front of a stream's
// parked events, each in its own transaction, until the stream's first
// parked event is not a held one, or none is left, or one fails. It
// records what it did in out's Released and Blocked.
func (a *Admin[T]) release(ctx context.Context, stream, by, note string, out *Outcome) error {
	conflicts := 0
	for {
		// The check and what it tells the runner happen under the
		// runner's lock: no batch parks a held event of the stream in
		// between, so none is left behind a stream the runner no longer
		// holds.
		mine, done, err := a.releaseCheck(ctx, stream)
		if err != nil || done {
			return err
		}
		progressed := false
	events:
		for _, ev := range mine {
			if ev.Cause != CauseHeld {
				break
			}
			res := Resolution{Action: Replayed, By: by, Note: note, At: a.cfg.Now().UTC()}
			_, err := a.applyParked(ctx, ev, res)
			var re *ReplayError
			switch {
			case err == nil:
				out.Released = append(out.Released, ev.Position)
				progressed = true
				continue
			case errors.Is(err, ErrNotParked):
				// Released by someone else meanwhile.
				progressed = true
				continue
			case errors.Is(err, ErrCheckpointConflict) && conflicts < maxReleaseConflicts:
				// Another transaction of the projection committed
				// meanwhile (memory and file refuse to interleave):
				// look again.
				conflicts++
				progressed = true
				break events
			case errors.As(err, &re):
				blocked := re.Event
				a.cfg.Logger.Warn("readmodel: a held event failed on release; its stream stays held", "projection", a.cfg.Name,
					"position", ev.Position.String(), "stream", stream, "event", ev.Name, "error", re.Err)
				if a.changed != nil {
					a.changed(stream, &blocked)
				}
				out.Blocked, out.BlockedErr = &blocked, re.Err
				return nil
			default:
				return err
			}
		}
		if !progressed {
			return nil
		}
	}
}

// releaseCheck returns the parked events of a stream, and whether the
// release is done (none is left, or the first is not a held one).
func (a *Admin[T]) releaseCheck(ctx context.Context, stream string) ([]ParkedEvent, bool, error) {
	if a.lock != nil {
		defer a.lock()()
	}
	evs, err := a.List(ctx)
	if err != nil {
		return nil, false, err
	}
	var mine []ParkedEvent
	for _, ev := range evs {
		if ev.StreamID == stream {
			mine = append(mine, ev)
		}
	}
	if len(mine) > 0 && mine[0].Cause == CauseHeld {
		return mine, false, nil
	}
	if a.changed != nil {
		var first *ParkedEvent
		if len(mine) > 0 {
			first = &mine[0]
		}
		a.changed(stream, first)
	}
	return mine, true, nil
}

// applyParked takes ev off the parked list with res; for a replay it
// applies ev through the handlers in the same transaction. A replay that
// fails again is recorded on the parked event and returned as a
// *ReplayError.
func (a *Admin[T]) applyParked(ctx context.Context, ev ParkedEvent, res Resolution) (ParkedEvent, error) {
	var it *item[T]
	if res.Action == Replayed {
		raw, err := a.stored(ctx, ev)
		if err != nil {
			return ParkedEvent{}, err
		}
		it = a.r.prepareItem(raw)
	}
	if a.lock != nil {
		defer a.lock()()
	}
	tx, err := a.begin(ctx, ev.Partition)
	if err != nil {
		return ParkedEvent{}, err
	}
	parked, err := tx.Unpark(ctx, ev.Position, res)
	if err != nil {
		tx.Rollback(ctx)
		return ParkedEvent{}, err
	}
	if it != nil {
		var failure error
		cause := CauseHandler
		switch {
		case it.poison != nil:
			failure, cause = it.err, it.poison.Cause
		default:
			h := tx.Handle(ev.Position)
			for _, call := range it.calls {
				if failure = safeCall(ctx, h, call); failure != nil {
					break
				}
			}
		}
		if failure != nil {
			tx.Rollback(ctx)
			return ParkedEvent{}, a.failed(ctx, parked, cause, failure)
		}
	}
	if err := tx.Commit(ctx, nil); err != nil {
		tx.Rollback(ctx)
		return ParkedEvent{}, err
	}
	return parked, nil
}

// begin starts a transaction of a resolution of an event of partition p.
// It takes the store transaction the partition's batches take, whichever
// instance runs them: per partition where the store serialises per
// partition ([PartitionBeginner], which also waits for a transaction of the
// whole projection), else the projection's. So a replay never interleaves
// with a batch of the partition's owner, in this process or another, with
// or without [Config.Leases] (tested: TestReplayWaitsForTheOwnersBatch in
// package postgres). The file store's lock and SQLite's single writer
// serialise every transaction anyway; MongoDB's serialises those of one
// process, and its checkpoint links settle races across processes.
func (a *Admin[T]) begin(ctx context.Context, p uint16) (Tx[T], error) {
	if pb, ok := a.cfg.Store.(PartitionBeginner[T]); ok {
		return pb.BeginPartitions(ctx, a.cfg.Name, []uint16{p})
	}
	return a.cfg.Store.Begin(ctx, a.cfg.Name)
}

// failed records a failed replay on the parked event.
func (a *Admin[T]) failed(ctx context.Context, ev ParkedEvent, cause Cause, failure error) error {
	ev.Cause, ev.Reason, ev.Attempts, ev.ParkedAt = cause, failure.Error(), ev.Attempts+1, a.cfg.Now().UTC()
	rerr := &ReplayError{Projection: a.cfg.Name, Event: ev, Err: failure}
	tx, err := a.begin(ctx, ev.Partition)
	if err == nil {
		if err = tx.Park(ctx, ev); err == nil {
			err = tx.Commit(ctx, nil)
		}
		if err != nil {
			tx.Rollback(ctx)
		}
	}
	if err != nil {
		a.cfg.Logger.Warn("readmodel: could not record a failed replay on the parked event", "projection", a.cfg.Name,
			"position", ev.Position.String(), "error", err)
	}
	return rerr
}

// stored returns the event to replay: as SierraDB holds it when the admin
// has a client (with its timestamp and transaction id), else the parked
// copy.
func (a *Admin[T]) stored(ctx context.Context, ev ParkedEvent) (sierradb.Event, error) {
	raw := sierradb.Event{
		ID: ev.EventID, StreamID: ev.StreamID, StreamVersion: ev.StreamVersion, Name: ev.Name,
		Payload: ev.Payload, Metadata: ev.Metadata, PartitionID: ev.Partition, PartitionSequence: ev.Sequence,
	}
	if a.cfg.Client == nil {
		return raw, nil
	}
	got, err := a.cfg.Client.Get(ctx, ev.EventID)
	switch {
	case errors.Is(err, sierradb.ErrNotFound):
		a.cfg.Logger.Warn("readmodel: a parked event is no longer in SierraDB; replaying the parked copy (without timestamp)",
			"projection", a.cfg.Name, "position", ev.Position.String(), "event_id", ev.EventID)
		return raw, nil
	case err != nil:
		return sierradb.Event{}, fmt.Errorf("readmodel: read parked event %s from SierraDB: %w", ev.EventID, err)
	case got.StreamID != ev.StreamID || got.StreamVersion != ev.StreamVersion:
		return sierradb.Event{}, fmt.Errorf("readmodel: parked event %s is %s v%d in SierraDB, not %s v%d: is the projection pointed at another server?",
			ev.EventID, got.StreamID, got.StreamVersion, ev.StreamID, ev.StreamVersion)
	}
	// The position is the one the projection parked it at.
	got.PartitionID, got.PartitionSequence = ev.Partition, ev.Sequence
	return got, nil
}
