package readmodel

// Batches: each event prepared for its handlers, a batch applied in one
// store transaction with its checkpoint advance, failures retried or
// parked, and the subscription acknowledged after the commit.

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/internal/backoff"
	"github.com/esmill/esmill/internal/telemetry"
	"github.com/esmill/esmill/sierradb"
)

// item is one event of a batch, prepared for applying.
type item[T any] struct {
	ev     sierradb.Event
	pos    Position
	calls  []func(ctx context.Context, tx T) error // nil: nothing to apply
	poison *ParkedEvent
	err    error // why it is poison
	// parent is the span of the command that wrote the event, if its
	// metadata carries one.
	parent trace.SpanContext
}

func (r *Runner[T]) prepareItem(ev sierradb.Event) *item[T] {
	it := &item[T]{ev: ev, pos: Position{ev.PartitionID, ev.PartitionSequence}}
	m := Meta{
		Projection: r.cfg.Name, Position: it.pos, EventID: ev.ID, TransactionID: ev.TransactionID,
		StreamID: ev.StreamID, StreamVersion: ev.StreamVersion, Name: ev.Name, Timestamp: ev.Timestamp,
	}
	if ev.StreamID == sierradb.ServerIDStream {
		// The server's identity (see Client.ServerID): no projection's
		// business.
		return it
	}
	c := r.disp.cats[Category(ev.StreamID)]
	if c == nil {
		for _, h := range r.disp.other {
			call := h.rawCall
			it.calls = append(it.calls, func(ctx context.Context, tx T) error { return call(ctx, tx, ev, m) })
		}
		return it
	}
	if !c.known[ev.Name] {
		if r.cfg.UnknownEvents == PoisonUnknown {
			it.err = fmt.Errorf("event name %q is not registered in entity type %q", ev.Name, c.kind.category)
			it.poison = r.parked(it, CauseUnknown, it.err.Error(), 0)
		}
		return it
	}
	if !c.wants(ev.Name) {
		return it
	}
	d, err := c.kind.decode(ev)
	if err != nil {
		it.err = err
		it.poison = r.parked(it, CauseDecode, err.Error(), 0)
		return it
	}
	m.Metadata = d.meta
	it.parent = telemetry.EnvelopeSpanContext(d.meta)
	for _, h := range c.handlers(d) {
		call := h.call
		it.calls = append(it.calls, func(ctx context.Context, tx T) error { return call(ctx, tx, d, m) })
	}
	return it
}

func (r *Runner[T]) parked(it *item[T], cause Cause, reason string, attempts int) *ParkedEvent {
	ev := it.ev
	return &ParkedEvent{
		Position: it.pos, EventID: ev.ID, StreamID: ev.StreamID, StreamVersion: ev.StreamVersion,
		Name: ev.Name, Payload: ev.Payload, Metadata: ev.Metadata,
		Cause: cause, Reason: reason, Attempts: attempts, ParkedAt: r.cfg.Now().UTC(),
	}
}

// handlerFailure is a handler error at one item of a batch.
type handlerFailure struct {
	index int
	err   error
}

func (e *handlerFailure) Error() string { return e.err.Error() }

// process applies the batch, retrying and parking as configured, until it
// is committed or a fatal error.
func (r *Runner[T]) process(ctx context.Context, sub *sierradb.Subscription, items []*item[T]) error {
	cfg := &r.cfg
	failures := make(map[Position]int)
	storeFails := 0
	retry := backoff.Policy{Initial: cfg.RetryBackoff, Max: cfg.MaxRetryBackoff}.Start()
	for len(items) > 0 {
		cut := len(items)
		if cfg.OnPoison == Stop {
			for i, it := range items {
				if it.poison != nil {
					cut = i
					break
				}
			}
			if cut == 0 {
				return &PoisonError{Projection: cfg.Name, Event: *items[0].poison, Err: items[0].err}
			}
		}
		batch := items[:cut]
		if !r.holds(batch) {
			// A lease ran out: another instance may own a partition of
			// the batch by now. Abandon it; the compare-and-set would
			// refuse it anyway.
			return errRebalance
		}
		err := r.commit(ctx, batch)
		var hf *handlerFailure
		switch {
		case err == nil:
			r.committed(sub, batch)
			items = items[cut:]
			storeFails = 0
			retry.Reset()
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &hf):
			if hf.index > 0 {
				// Commit what applied cleanly before the failing event.
				if err := r.process(ctx, sub, items[:hf.index]); err != nil {
					return err
				}
				items = items[hf.index:]
			}
			it := items[0]
			// A failure marked transient never counts; one that
			// declares another class (final, poison: a panic) is
			// poison at once; one of unknown meaning is retried
			// MaxAttempts times (tested: TestHandlerErrors).
			class, declared := esmill.Declared(hf.err)
			if tc, ok := cfg.Store.(TransientChecker); ok && !declared && tc.IsTransient(hf.err) {
				class, declared = esmill.Transient, true
			}
			if !declared || class != esmill.Transient {
				failures[it.pos]++
			}
			if (declared && class != esmill.Transient) || failures[it.pos] >= cfg.MaxAttempts {
				it.poison = r.parked(it, CauseHandler, hf.err.Error(), failures[it.pos])
				it.err, it.calls = hf.err, nil
				cfg.Logger.Warn("readmodel: handler keeps failing; event is poison",
					"projection", cfg.Name, "position", it.pos.String(), "stream", it.ev.StreamID,
					"event", it.ev.Name, "attempts", failures[it.pos], "error", hf.err)
				continue
			}
			cfg.Logger.Warn("readmodel: handler failed; retrying the batch", "projection", cfg.Name,
				"position", it.pos.String(), "stream", it.ev.StreamID, "event", it.ev.Name,
				"attempt", failures[it.pos], "error", hf.err)
			if err := r.retryWait(ctx, retry); err != nil {
				return err
			}
		case errors.Is(err, ErrCheckpointConflict):
			return err
		default:
			// A store failure. The commit may have happened anyway (the
			// connection broke during it): the stored checkpoints say.
			if ok, cerr := r.wasCommitted(ctx, batch); cerr == nil && ok {
				r.committed(sub, batch)
				items = items[cut:]
				storeFails = 0
				retry.Reset()
				continue
			} else if errors.Is(cerr, ErrCheckpointConflict) {
				return cerr
			}
			storeFails++
			if cfg.StoreRetries >= 0 && storeFails > cfg.StoreRetries {
				return fmt.Errorf("readmodel: %s: store failed %d times: %w", cfg.Name, storeFails, err)
			}
			cfg.Logger.Warn("readmodel: store failed; retrying the batch", "projection", cfg.Name,
				"attempt", storeFails, "error", err)
			if err := r.retryWait(ctx, retry); err != nil {
				return err
			}
		}
	}
	return nil
}

// holds reports whether the runner still holds a valid lease on every
// partition of the batch (always, without Leases).
func (r *Runner[T]) holds(batch []*item[T]) bool {
	if r.member == nil {
		return true
	}
	checked := make(map[uint16]bool)
	for _, it := range batch {
		p := it.pos.Partition
		if checked[p] {
			continue
		}
		checked[p] = true
		tok, ok := r.share.token(p)
		if !ok || !r.member.Valid(int(p), tok) {
			return false
		}
	}
	return true
}

// retryWait waits before a batch is retried. A revocation cuts it short
// with errRebalance: the batch is abandoned, so that the partition's lease
// can be released.
func (r *Runner[T]) retryWait(ctx context.Context, b *backoff.Backoff) error {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-r.share.revokingCh():
		return errRebalance
	case <-ctx.Done():
		return ctx.Err()
	}
}

// commit applies the batch in one store transaction.
func (r *Runner[T]) commit(ctx context.Context, batch []*item[T]) error {
	defer r.lockTx()()
	r.holdBatch(batch)
	tx, err := r.beginTx(ctx, batch)
	if err != nil {
		return err
	}
	for i, it := range batch {
		if it.poison != nil {
			if err := tx.Park(ctx, *it.poison); err != nil {
				tx.Rollback(ctx)
				return err
			}
			continue
		}
		if len(it.calls) == 0 {
			continue
		}
		h := tx.Handle(it.pos)
		hctx, span := r.startSpan(ctx, it)
		for _, call := range it.calls {
			if err := safeCall(hctx, h, call); err != nil {
				endSpan(span, err)
				tx.Rollback(ctx)
				return &handlerFailure{index: writeIndex(batch, err, i), err: err}
			}
		}
		endSpan(span, nil)
	}
	if err := tx.Commit(ctx, r.advances(batch)); err != nil {
		tx.Rollback(ctx)
		var we *WriteError
		if errors.As(err, &we) {
			// A queued write failed when the store sent the batch: the
			// failure of the event that queued it.
			return &handlerFailure{index: writeIndex(batch, err, 0), err: err}
		}
		return err
	}
	return nil
}

// writeIndex returns the index in batch of the event whose queued write
// failed when err is a [*WriteError] of an event of the batch, or def.
func writeIndex[T any](batch []*item[T], err error, def int) int {
	var we *WriteError
	if !errors.As(err, &we) {
		return def
	}
	for i, it := range batch {
		if it.pos == we.Position {
			return i
		}
	}
	return def
}

// beginTx starts the batch's transaction: per partition when the runner
// shares the projection and the store can (see PartitionBeginner).
func (r *Runner[T]) beginTx(ctx context.Context, batch []*item[T]) (Tx[T], error) {
	if pb, ok := r.cfg.Store.(PartitionBeginner[T]); ok && r.cfg.Leases != nil {
		var parts []uint16
		for _, it := range batch {
			if !slices.Contains(parts, it.pos.Partition) {
				parts = append(parts, it.pos.Partition)
			}
		}
		slices.Sort(parts)
		return pb.BeginPartitions(ctx, r.cfg.Name, parts)
	}
	return r.cfg.Store.Begin(ctx, r.cfg.Name)
}

func safeCall[T any](ctx context.Context, tx T, call func(ctx context.Context, tx T) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return call(ctx, tx)
}

// advances returns the checkpoint moves of a batch.
func (r *Runner[T]) advances(batch []*item[T]) []Advance {
	next := make(map[uint16]uint64)
	for _, it := range batch {
		if it.pos.Sequence >= next[it.pos.Partition] {
			next[it.pos.Partition] = it.pos.Sequence
		}
	}
	r.prog.mu.Lock()
	defer r.prog.mu.Unlock()
	adv := make([]Advance, 0, len(next))
	for p, n := range next {
		prev := int64(-1)
		if s, ok := r.prog.applied[p]; ok {
			prev = int64(s)
		}
		adv = append(adv, Advance{Partition: p, Prev: prev, Next: n})
	}
	slices.SortFunc(adv, func(a, b Advance) int { return int(a.Partition) - int(b.Partition) })
	return adv
}

// wasCommitted tells, after a failed commit, whether the store holds the
// batch's checkpoints anyway.
func (r *Runner[T]) wasCommitted(ctx context.Context, batch []*item[T]) (bool, error) {
	cps, err := r.cfg.Store.Checkpoints(ctx, r.cfg.Name)
	if err != nil {
		return false, err
	}
	done, notDone := 0, 0
	for _, a := range r.advances(batch) {
		s, ok := cps[a.Partition]
		switch {
		case ok && s == a.Next:
			done++
		case (!ok && a.Prev < 0) || (ok && int64(s) == a.Prev):
			notDone++
		default:
			return false, &ConflictError{Projection: r.cfg.Name, Partition: a.Partition, Expected: a.Prev,
				Detail: fmt.Sprintf("found %d after a failed commit", s)}
		}
	}
	if done > 0 && notDone > 0 {
		return false, &ConflictError{Projection: r.cfg.Name, Detail: "half of a batch found committed"}
	}
	return done > 0, nil
}

// committed records a committed batch and acknowledges its events.
func (r *Runner[T]) committed(sub *sierradb.Subscription, batch []*item[T]) {
	r.heldCommitted(batch)
	r.prog.mu.Lock()
	for _, it := range batch {
		if s, ok := r.prog.applied[it.pos.Partition]; !ok || it.pos.Sequence > s {
			r.prog.applied[it.pos.Partition] = it.pos.Sequence
		}
		if h := r.prog.heads[it.pos.Partition]; int64(it.pos.Sequence) > h {
			r.prog.heads[it.pos.Partition] = int64(it.pos.Sequence)
		}
		if it.poison != nil {
			r.prog.nParked++
			r.cfg.Logger.Warn("readmodel: event parked", "projection", r.cfg.Name, "position", it.pos.String(),
				"stream", it.ev.StreamID, "event", it.ev.Name, "cause", string(it.poison.Cause), "reason", it.poison.Reason)
		}
	}
	for _, it := range batch {
		if it.ev.StreamID != sierradb.ServerIDStream {
			r.prog.nApplied++
		}
	}
	r.updateStateLocked()
	r.prog.changedLocked()
	r.prog.mu.Unlock()
	for _, it := range batch {
		sub.Ack(it.ev)
	}
}
