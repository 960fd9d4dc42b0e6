package readmodel

// Holding: under HoldEntity the runner parks the later events of a stream
// whose event is parked, behind it, instead of applying them out of
// context; replaying or skipping the parked one releases them in order.

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// HoldPolicy says what a runner does with the later events of a stream
// (an entity) one of whose events is parked.
type HoldPolicy int

const (
	// HoldNothing applies them as they come: the entity's read model
	// misses the parked event until it is replayed, and a replay applies
	// it after them.
	HoldNothing HoldPolicy = iota
	// HoldEntity parks them too, with the cause [CauseHeld], so that
	// none is applied without the one before it. Replaying or skipping
	// the stream's first parked event (with [Admin] or the runner's
	// [Runner.Replay] and [Runner.Skip]) applies them in stream order.
	// Events of other streams go on.
	HoldEntity
)

// parking is a runner's state for parked events: its admin, the lock
// that serialises store transactions with it, and, under HoldEntity, the
// streams that have parked events.
type parking[T any] struct {
	// txMu is held for each store transaction of the runner, batch or
	// resolution, so that they run one after another (memory and file refuse a
	// transaction that began before another committed).
	txMu sync.Mutex

	adminOnce sync.Once
	admin     *Admin[T]

	mu sync.Mutex
	// first maps each stream with parked events to its first one.
	first map[string]Position
	// releasing counts the resolutions under way per stream, which the
	// runner leaves to them.
	releasing map[string]int
}

func (r *Runner[T]) lockTx() func() {
	r.park.txMu.Lock()
	return r.park.txMu.Unlock
}

// Admin returns the admin of the runner's projection, whose transactions
// are serialised with the runner's batches: use it (or [Runner.Replay]
// and [Runner.Skip]) to resolve parked events while the runner runs in
// this process. Under [HoldEntity] the runner learns at once what it
// released; a resolution made by another process reaches it within
// [Config.LagInterval] (held events meanwhile stay held, and are released
// in order).
func (r *Runner[T]) Admin() *Admin[T] {
	r.park.adminOnce.Do(func() {
		r.park.admin = &Admin[T]{cfg: r.cfg, r: r, lock: r.lockTx, changed: r.heldChanged, claim: r.claimStream}
	})
	return r.park.admin
}

// Replay replays the event parked at pos; see [Admin.Replay]. It must not
// be called from a handler of the runner.
func (r *Runner[T]) Replay(ctx context.Context, pos Position, by, note string) (Outcome, error) {
	return r.Admin().Replay(ctx, pos, by, note)
}

// Skip skips the event parked at pos; see [Admin.Skip]. It must not be
// called from a handler of the runner.
func (r *Runner[T]) Skip(ctx context.Context, pos Position, by, note string) (Outcome, error) {
	return r.Admin().Skip(ctx, pos, by, note)
}

// claimStream marks a stream as being resolved. ok is false when it
// already is.
func (r *Runner[T]) claimStream(stream string) (func(), bool) {
	r.park.mu.Lock()
	defer r.park.mu.Unlock()
	if r.park.releasing == nil {
		r.park.releasing = make(map[string]int)
	}
	r.park.releasing[stream]++
	ok := r.park.releasing[stream] == 1
	return func() {
		r.park.mu.Lock()
		defer r.park.mu.Unlock()
		if r.park.releasing[stream]--; r.park.releasing[stream] <= 0 {
			delete(r.park.releasing, stream)
		}
	}, ok
}

// heldChanged records, after a release, a stream's first parked event
// (nil: none is left).
func (r *Runner[T]) heldChanged(stream string, first *ParkedEvent) {
	if r.cfg.Hold != HoldEntity {
		return
	}
	r.park.mu.Lock()
	defer r.park.mu.Unlock()
	if first == nil {
		delete(r.park.first, stream)
		return
	}
	if r.park.first == nil {
		r.park.first = make(map[string]Position)
	}
	r.park.first[stream] = first.Position
}

// loadHeld reads which streams have parked events, under the store lock
// (no batch commits meanwhile). It returns the streams whose first parked
// event is a held one (with Leases, of the partitions the runner works
// on): they have nothing left to wait for.
func (r *Runner[T]) loadHeld(ctx context.Context) ([]string, error) {
	defer r.lockTx()()
	evs, err := r.cfg.Store.Parked(ctx, r.cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("readmodel: %s: load parked events: %w", r.cfg.Name, err)
	}
	first := make(map[string]Position)
	var orphans []string
	for _, ev := range evs {
		if _, ok := first[ev.StreamID]; ok {
			continue
		}
		first[ev.StreamID] = ev.Position
		// With Leases, the owner of the partition releases it.
		if ev.Cause == CauseHeld && (r.cfg.Leases == nil || r.share.isOwned(ev.Partition)) {
			orphans = append(orphans, ev.StreamID)
		}
	}
	r.park.mu.Lock()
	r.park.first = first
	r.park.mu.Unlock()
	return orphans, nil
}

// keepHeld, under HoldEntity, reads the parked events again every
// LagInterval while some stream is held, to learn of resolutions made
// elsewhere, and releases the held events whose stream has nothing parked
// before them any more.
func (r *Runner[T]) keepHeld(ctx context.Context) {
	every := r.cfg.LagInterval
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	orphans, err := r.loadHeld(ctx)
	if err != nil && ctx.Err() == nil {
		r.cfg.Logger.Warn("readmodel: reading parked events failed", "projection", r.cfg.Name, "error", err)
	}
	for {
		for _, stream := range orphans {
			done, ok := r.claimStream(stream)
			if !ok {
				// Resolved by a call of the runner's admin meanwhile,
				// which releases the stream itself.
				done()
				continue
			}
			var out Outcome
			err := r.Admin().release(ctx, stream, "readmodel", "held, with nothing parked before it in its stream any more", &out)
			done()
			if err != nil && ctx.Err() == nil {
				r.cfg.Logger.Warn("readmodel: releasing held events failed; trying again later", "projection", r.cfg.Name,
					"stream", stream, "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.park.mu.Lock()
		n := len(r.park.first)
		r.park.mu.Unlock()
		if n == 0 {
			orphans = nil
			continue
		}
		if orphans, err = r.loadHeld(ctx); err != nil && ctx.Err() == nil {
			r.cfg.Logger.Warn("readmodel: reading parked events failed", "projection", r.cfg.Name, "error", err)
		}
	}
}

// holdBatch, under HoldEntity and the store lock, turns the events of the
// batch whose stream has a parked event (stored, or earlier in the batch)
// into held ones.
func (r *Runner[T]) holdBatch(batch []*item[T]) {
	if r.cfg.Hold != HoldEntity {
		return
	}
	r.park.mu.Lock()
	defer r.park.mu.Unlock()
	var inBatch map[string]Position
	for _, it := range batch {
		if it.poison == nil && len(it.calls) == 0 {
			continue // skipped: nothing to hold
		}
		stream := it.ev.StreamID
		first, ok := r.park.first[stream]
		if !ok {
			first, ok = inBatch[stream]
		}
		switch {
		case ok && it.poison == nil:
			reason := fmt.Sprintf("held behind %s, an earlier parked event of stream %s", first, stream)
			it.poison, it.calls = r.parked(it, CauseHeld, reason, 0), nil
		case !ok && it.poison != nil:
			if inBatch == nil {
				inBatch = make(map[string]Position)
			}
			inBatch[stream] = it.pos
		}
	}
}

// heldCommitted, under the store lock, records the streams of a committed
// batch's parked events.
func (r *Runner[T]) heldCommitted(batch []*item[T]) {
	if r.cfg.Hold != HoldEntity {
		return
	}
	r.park.mu.Lock()
	defer r.park.mu.Unlock()
	if r.park.first == nil {
		r.park.first = make(map[string]Position)
	}
	for _, it := range batch {
		if it.poison == nil {
			continue
		}
		if _, ok := r.park.first[it.ev.StreamID]; !ok {
			r.park.first[it.ev.StreamID] = it.pos
		}
	}
}
