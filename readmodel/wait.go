package readmodel

import (
	"context"
	"time"
)

// sharedPoll is how often Sync and WaitFor read the stored checkpoints of
// partitions another instance works on.
const sharedPoll = 50 * time.Millisecond

// Sync waits until the projection has applied everything SierraDB held
// when Sync was called (read with EPSEQ), or until ctx is done or the
// runner stops. With Config.Leases, the partitions other instances work
// on count as applied when their stored checkpoints say so. SierraDB makes
// an append visible to EPSEQ asynchronously (within milliseconds); to wait
// for events just appended, pass their positions to [Runner.WaitFor].
func (r *Runner[T]) Sync(ctx context.Context) error {
	select {
	case <-r.ready:
	case <-r.done:
		return r.stoppedErr()
	case <-ctx.Done():
		return ctx.Err()
	}
	heads, err := r.cfg.Client.PartitionSequences(ctx, r.prog.partitions)
	if err != nil {
		return err
	}
	return r.wait(ctx, heads)
}

// WaitFor waits until the projection has applied (or skipped, or parked)
// the events at the given positions, such as those of an append's result,
// or until ctx is done or the runner stops. With Config.Leases, positions
// in partitions other instances work on are waited for in the stored
// checkpoints.
func (r *Runner[T]) WaitFor(ctx context.Context, positions ...Position) error {
	heads := make(map[uint16]int64)
	for _, p := range positions {
		heads[p.Partition] = max(heads[p.Partition], int64(p.Sequence))
	}
	select {
	case <-r.ready:
	case <-r.done:
		return r.stoppedErr()
	case <-ctx.Done():
		return ctx.Err()
	}
	return r.wait(ctx, heads)
}

// wait waits until every partition has reached heads: the owned ones in
// the runner's progress, the others in the store.
func (r *Runner[T]) wait(ctx context.Context, heads map[uint16]int64) error {
	var poll <-chan time.Time
	if r.cfg.Leases != nil {
		t := time.NewTicker(sharedPoll)
		defer t.Stop()
		poll = t.C
	}
	for {
		r.prog.mu.Lock()
		mine, theirs := make(map[uint16]int64), make(map[uint16]int64)
		for p, h := range heads {
			if r.prog.owned[p] || r.cfg.Leases == nil {
				mine[p] = h
			} else {
				theirs[p] = h
			}
		}
		ok := r.caughtUpLocked(mine)
		ch := r.prog.changed
		r.prog.mu.Unlock()
		if ok && len(theirs) > 0 {
			ok = r.storedReach(ctx, theirs)
		}
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-poll:
		case <-r.done:
			if r.cfg.Leases == nil {
				r.prog.mu.Lock()
				ok := r.caughtUpLocked(heads)
				r.prog.mu.Unlock()
				if ok {
					return nil
				}
			}
			return r.stoppedErr()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// storedReach reports whether the stored checkpoints reach heads.
func (r *Runner[T]) storedReach(ctx context.Context, heads map[uint16]int64) bool {
	cps, err := r.cfg.Store.Checkpoints(ctx, r.cfg.Name)
	if err != nil {
		return false
	}
	for p, h := range heads {
		if s, ok := cps[p]; h >= 0 && (!ok || int64(s) < h) {
			return false
		}
	}
	return true
}

func (r *Runner[T]) stoppedErr() error {
	if err := r.Err(); err != nil {
		return err
	}
	return ErrClosed
}
