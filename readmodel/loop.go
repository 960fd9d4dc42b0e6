package readmodel

// The runner's loop: a round per subscription. Each round takes the
// partitions the runner works on, reads their checkpoints from the store
// (another instance may have advanced them), compares them with the
// partitions' heads, subscribes from checkpoint+1 and applies batches until
// the partitions change, a gap, a checkpoint conflict or an error.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/esmill/esmill/internal/backoff"
	"github.com/esmill/esmill/internal/headwait"
	"github.com/esmill/esmill/lease"
	"github.com/esmill/esmill/sierradb"
)

var (
	// errResync asks run to subscribe again from the checkpoints.
	errResync = errors.New("readmodel: resync")
	// errRebalance: the partitions changed; the round ends after the
	// batch in flight was committed or abandoned.
	errRebalance = errors.New("readmodel: partitions changed")
)

func (r *Runner[T]) run(ctx context.Context) error {
	cfg := &r.cfg
	count, err := cfg.Client.PartitionCount(ctx)
	if err != nil {
		return fmt.Errorf("readmodel: %s: %w", cfg.Name, err)
	}
	parts := make([]uint16, count)
	for i := range parts {
		parts[i] = uint16(i)
	}
	heads, err := cfg.Client.PartitionSequences(ctx, parts)
	if err != nil {
		return fmt.Errorf("readmodel: %s: read partition heads: %w", cfg.Name, err)
	}
	r.prog.mu.Lock()
	r.prog.partitions = parts
	r.prog.heads = heads
	r.prog.headsAt = cfg.Now()
	r.prog.sharing = cfg.Leases != nil
	r.prog.mu.Unlock()
	if err := r.checkServer(ctx); err != nil {
		var div *DivergedError
		if !errors.As(err, &div) {
			return err
		}
		if err := r.diverged(div); err != nil {
			return err
		}
	}

	var memberDone <-chan struct{}
	var member *lease.Member
	if cfg.Leases != nil {
		member, err = lease.Join(lease.Config{
			Store: cfg.Leases, Group: cfg.Group, Instance: cfg.Instance, Partitions: int(count),
			TTL: cfg.LeaseTTL, Logger: cfg.Logger,
		}, r.share)
		if err != nil {
			return fmt.Errorf("readmodel: %s: %w", cfg.Name, err)
		}
		r.member = member
		memberDone = member.Done()
	} else {
		r.share.assignAll(parts)
	}
	bg, stopBg := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stopBg()
		wg.Wait()
		// Nothing is in flight any more: the revocations of Close may
		// return at once.
		r.share.stop()
		if member != nil {
			member.Close()
		}
	}()
	close(r.ready)
	cfg.Logger.Info("readmodel: projection started", "projection", cfg.Name, "partitions", count,
		"instance", cfg.Instance, "group", cfg.Group)
	if cfg.LagInterval > 0 {
		wg.Go(func() { r.refreshHeads(bg) })
	}
	if cfg.ProgressInterval > 0 {
		wg.Go(func() { r.logProgress(bg) })
	}
	if cfg.Hold == HoldEntity {
		wg.Go(func() { r.keepHeld(bg) })
	}

	conflicts := backoff.Policy{Initial: cfg.RetryBackoff, Max: cfg.MaxRetryBackoff, Jitter: 0.5}.Start()
	buf := make([]*item[T], 0, cfg.BatchSize)
	for {
		owned, gained := r.share.take()
		set, from, err := r.prepare(ctx, owned, gained)
		if err != nil {
			return err
		}
		if len(set) == 0 {
			// Nothing to work on: wait for a lease, or for the end.
			select {
			case <-r.share.signal:
				continue
			case <-memberDone:
				return r.memberErr(member)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		sub, err := cfg.Client.SubscribePartitions(ctx, sierradb.PartitionSubscription{
			Partitions: set, From: from, Default: sierradb.StartBeginning, Window: cfg.Window, Resume: r.resumeCheck,
		})
		if err != nil {
			return fmt.Errorf("readmodel: %s: subscribe: %w", cfg.Name, err)
		}
		err = r.consume(ctx, sub, from, buf, memberDone)
		sub.Close()
		err = r.clusterDiverged(err)
		var div *DivergedError
		switch {
		case errors.Is(err, errResync), errors.Is(err, errRebalance):
		case errors.As(err, &div):
			if err := r.diverged(div); err != nil {
				return err
			}
		case errors.Is(err, ErrCheckpointConflict):
			r.prog.mu.Lock()
			r.prog.nConflicts++
			r.prog.mu.Unlock()
			hint := ""
			if cfg.Leases == nil {
				hint = "; several instances run this projection: set Config.Leases so that they share the partitions"
			}
			cfg.Logger.Warn("readmodel: another instance advanced a checkpoint; reading the checkpoints again"+hint,
				"projection", cfg.Name, "error", err)
			if err := r.pause(ctx, conflicts.Next()); err != nil {
				return err
			}
		case errors.Is(err, errMemberDone):
			return r.memberErr(member)
		default:
			return err
		}
	}
}

// errMemberDone: the lease member stopped.
var errMemberDone = errors.New("readmodel: lease member stopped")

func (r *Runner[T]) memberErr(m *lease.Member) error {
	if err := m.Err(); err != nil {
		return fmt.Errorf("readmodel: %s: %w", r.cfg.Name, err)
	}
	return fmt.Errorf("readmodel: %s: the lease member stopped", r.cfg.Name)
}

// pause waits d, or less if a revocation comes (returning nil) or ctx
// ends (returning its error).
func (r *Runner[T]) pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.share.revokingCh():
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// prepare starts a round: it reads the checkpoints, reads the heads of the
// owned partitions, holds or reports those that diverged and returns the
// partitions to subscribe to with their starts.
func (r *Runner[T]) prepare(ctx context.Context, owned, gained []uint16) ([]uint16, map[uint16]uint64, error) {
	cfg := &r.cfg
	cps, err := r.loadCheckpoints(ctx)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Hold == HoldEntity {
		// After the checkpoints: an event parked by a batch they count is
		// seen, and a batch parking one they do not count cannot commit
		// beside this round's (compare-and-set), so that no event of a
		// held stream is applied (tested: TestHoldEntitySharedPartitions).
		if _, err := r.loadHeld(ctx); err != nil {
			return nil, nil, err
		}
	}
	var heads map[uint16]int64
	if len(owned) > 0 {
		if heads, err = cfg.Client.PartitionSequences(ctx, owned); err != nil {
			return nil, nil, fmt.Errorf("readmodel: %s: read partition heads: %w", cfg.Name, err)
		}
	}
	r.prog.mu.Lock()
	clear(r.prog.owned)
	for _, p := range owned {
		r.prog.owned[p] = true
	}
	for _, p := range r.prog.partitions {
		if s, ok := cps[p]; ok {
			r.prog.applied[p] = s
		} else {
			delete(r.prog.applied, p)
		}
	}
	for p, h := range heads {
		r.prog.heads[p] = h
	}
	for _, p := range gained {
		r.prog.targets[p] = heads[p]
	}
	mismatch := r.prog.server != r.prog.recorded
	last := make(map[uint16]int64)
	var held []DivergedPartition
	for _, p := range owned {
		cp := int64(-1)
		if s, ok := cps[p]; ok {
			cp = int64(s)
		}
		if _, ok := r.prog.held[p]; ok {
			continue
		}
		if mismatch {
			held = append(held, DivergedPartition{Partition: p, Checkpoint: cp, Head: heads[p]})
			continue
		}
		last[p] = cp
	}
	server, recorded := r.prog.server, r.prog.recorded
	if r.prog.state == Starting {
		r.prog.state = CatchingUp
	}
	r.prog.mu.Unlock()
	if len(headwait.Ahead(last, heads)) > 0 {
		if heads, err = r.awaitHeads(ctx, last, heads); err != nil {
			return nil, nil, fmt.Errorf("readmodel: %s: read partition heads: %w", cfg.Name, err)
		}
		r.prog.mu.Lock()
		for p, h := range heads {
			r.prog.heads[p] = h
		}
		for _, p := range gained {
			r.prog.targets[p] = heads[p]
		}
		r.prog.mu.Unlock()
	}
	if d := headsBelow(last, heads); len(d) > 0 || len(held) > 0 {
		div := &DivergedError{Projection: cfg.Name, Partitions: append(held, d...), Server: server, Recorded: recorded}
		if err := r.diverged(div); err != nil {
			return nil, nil, err
		}
	}
	r.prog.mu.Lock()
	defer r.prog.mu.Unlock()
	r.updateStateLocked()
	r.prog.changedLocked()
	var set []uint16
	from := make(map[uint16]uint64)
	for _, p := range owned {
		if _, ok := r.prog.held[p]; ok {
			continue
		}
		set = append(set, p)
		if s, ok := r.prog.applied[p]; ok {
			from[p] = s + 1
		}
	}
	return set, from, nil
}

// loadCheckpoints reads the projection's checkpoints, retrying store
// failures as a commit does.
func (r *Runner[T]) loadCheckpoints(ctx context.Context) (map[uint16]uint64, error) {
	cfg := &r.cfg
	retry := backoff.Policy{Initial: cfg.RetryBackoff, Max: cfg.MaxRetryBackoff}.Start()
	for fails := 1; ; fails++ {
		cps, err := cfg.Store.Checkpoints(ctx, cfg.Name)
		if err == nil {
			return cps, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if cfg.StoreRetries >= 0 && fails > cfg.StoreRetries {
			return nil, fmt.Errorf("readmodel: %s: load checkpoints: %w", cfg.Name, err)
		}
		cfg.Logger.Warn("readmodel: loading checkpoints failed; retrying", "projection", cfg.Name, "attempt", fails, "error", err)
		if err := retry.Wait(ctx); err != nil {
			return nil, err
		}
	}
}

// consume applies the subscription's events until an error. It checks
// that every partition's sequences arrive gapless and in order (SierraDB
// numbers them so): a duplicate is dropped, and a gap ends the
// subscription with errResync after the events before it are committed. A
// change of the partitions ends it with errRebalance, after the batch in
// flight.
func (r *Runner[T]) consume(ctx context.Context, sub *sierradb.Subscription, next map[uint16]uint64, buf []*item[T], memberDone <-chan struct{}) error {
	for {
		batch, stop, err := r.collect(ctx, sub, next, buf[:0], memberDone)
		if err != nil {
			return err
		}
		if len(batch) > 0 {
			if err := r.process(ctx, sub, batch); err != nil {
				return err
			}
		}
		if stop != nil {
			return stop
		}
	}
}

// collect waits for a first event, then gathers more until BatchSize or
// until BatchTimeout has passed since the first. next holds the sequence
// expected next per partition (absent: 0). It returns with errResync on a
// gap (the event after it is dropped, to be delivered again), errRebalance
// when the partitions change and errMemberDone when the lease member
// stops, with the batch gathered so far.
func (r *Runner[T]) collect(ctx context.Context, sub *sierradb.Subscription, next map[uint16]uint64, batch []*item[T], memberDone <-chan struct{}) ([]*item[T], error, error) {
	events := sub.Events()
	// add takes an event; it reports false on a gap.
	add := func(ev sierradb.Event) bool {
		want := next[ev.PartitionID]
		switch {
		case ev.PartitionSequence < want:
			r.cfg.Logger.Warn("readmodel: duplicate event dropped", "projection", r.cfg.Name,
				"partition", ev.PartitionID, "sequence", ev.PartitionSequence, "expected", want)
			sub.Ack(ev)
			return true
		case ev.PartitionSequence > want:
			r.cfg.Logger.Warn("readmodel: gap in a partition; subscribing again", "projection", r.cfg.Name,
				"partition", ev.PartitionID, "sequence", ev.PartitionSequence, "expected", want)
			r.prog.mu.Lock()
			r.prog.nResyncs++
			r.prog.mu.Unlock()
			return false
		}
		next[ev.PartitionID] = want + 1
		batch = append(batch, r.prepareItem(ev))
		return true
	}
	ended := func() error { return &SubscriptionEndedError{Projection: r.cfg.Name, Err: sub.Err()} }
	for len(batch) == 0 {
		select {
		case ev, ok := <-events:
			if !ok {
				return nil, nil, ended()
			}
			if !add(ev) {
				return batch, errResync, nil
			}
		case <-r.share.signal:
			return batch, errRebalance, nil
		case <-memberDone:
			return batch, errMemberDone, nil
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for len(batch) < r.cfg.BatchSize {
		select {
		case ev, ok := <-events:
			if !ok {
				return batch, nil, nil
			}
			if !add(ev) {
				return batch, errResync, nil
			}
			continue
		default:
		}
		if timer == nil {
			timer = time.NewTimer(r.cfg.BatchTimeout)
		}
		select {
		case ev, ok := <-events:
			if !ok {
				return batch, nil, nil
			}
			if !add(ev) {
				return batch, errResync, nil
			}
		case <-timer.C:
			return batch, nil, nil
		case <-r.share.signal:
			return batch, errRebalance, nil
		case <-memberDone:
			return batch, errMemberDone, nil
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	return batch, nil, nil
}
