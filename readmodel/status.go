package readmodel

import (
	"context"
	"slices"
	"sync"
	"time"
)

// State is where a runner is in its life.
type State int

const (
	// Starting: loading checkpoints and subscribing.
	Starting State = iota
	// CatchingUp: applying the history that was stored when the runner
	// started.
	CatchingUp
	// Live: caught up with the heads of the partitions as they were at
	// start; new events are applied as they arrive.
	Live
	// Stopped: the runner has ended.
	Stopped
)

func (s State) String() string {
	switch s {
	case Starting:
		return "starting"
	case CatchingUp:
		return "catching-up"
	case Live:
		return "live"
	case Stopped:
		return "stopped"
	}
	return "unknown"
}

// PartitionStatus is one partition's progress.
type PartitionStatus struct {
	Partition uint16
	// Applied is the last applied sequence, -1 when none.
	Applied int64
	// Head is the partition's latest sequence as last read (EPSEQ, every
	// LagInterval, or higher if the runner has applied past it), -1 when
	// the partition is empty.
	Head int64
	// Lag is Head - Applied, never negative.
	Lag int64
}

// Status is a snapshot of a runner's progress.
type Status struct {
	Projection string
	State      State
	// Partitions lists every partition in order.
	Partitions []PartitionStatus
	// Lag is the sum of the partitions' lags.
	Lag int64
	// Handled counts the events this run has committed (applied, skipped
	// or parked), and Parked those parked.
	Handled uint64
	Parked  uint64
	// Resyncs counts the times the runner subscribed again because a
	// partition's sequence skipped (SierraDB numbers them without gaps).
	Resyncs uint64
	// HeadsAt is when the heads were last read.
	HeadsAt time.Time
	// Err is the error that ended the runner, if any.
	Err error
}

// Status returns the runner's progress: its state and its lag per
// partition against the partitions' latest sequences.
func (r *Runner[T]) Status() Status {
	// Lock order: the runner's life, then its progress; the error and the
	// state are read together.
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.err
	pr := &r.prog
	pr.mu.Lock()
	defer pr.mu.Unlock()
	st := Status{
		Projection: r.cfg.Name, State: pr.state, Handled: pr.nApplied, Parked: pr.nParked, Resyncs: pr.nResyncs,
		HeadsAt: pr.headsAt, Err: err,
	}
	for _, p := range pr.partitions {
		ps := PartitionStatus{Partition: p, Applied: -1, Head: pr.heads[p]}
		if s, ok := pr.applied[p]; ok {
			ps.Applied = int64(s)
		}
		ps.Lag = max(0, ps.Head-ps.Applied)
		st.Lag += ps.Lag
		st.Partitions = append(st.Partitions, ps)
	}
	slices.SortFunc(st.Partitions, func(a, b PartitionStatus) int { return int(a.Partition) - int(b.Partition) })
	return st
}

// progress is what a runner has applied and what it knows of the
// partitions' heads: what Status reports and Sync and WaitFor wait on.
type progress struct {
	mu sync.Mutex
	// partitions is set once, before the runner is ready, and read
	// without the lock afterwards.
	partitions []uint16
	state      State
	applied    map[uint16]uint64
	heads      map[uint16]int64
	// targets are the heads at start: reaching them makes the runner live.
	targets  map[uint16]int64
	headsAt  time.Time
	nApplied uint64
	nParked  uint64
	nResyncs uint64
	// changed is closed and replaced on every commit.
	changed chan struct{}
}

func (p *progress) setState(s State) {
	p.mu.Lock()
	p.state = s
	p.mu.Unlock()
}

// caughtUpLocked reports whether every partition has reached heads.
func (r *Runner[T]) caughtUpLocked(heads map[uint16]int64) bool {
	for p, h := range heads {
		if h < 0 {
			continue
		}
		if s, ok := r.prog.applied[p]; !ok || int64(s) < h {
			return false
		}
	}
	return true
}

func (r *Runner[T]) updateLiveLocked() {
	if r.prog.state != CatchingUp || !r.caughtUpLocked(r.prog.targets) {
		return
	}
	r.prog.state = Live
	close(r.live)
	r.cfg.Logger.Info("readmodel: projection is live", "projection", r.cfg.Name)
}

// refreshHeads reads the partitions' latest sequences every LagInterval.
func (r *Runner[T]) refreshHeads(ctx context.Context) {
	t := time.NewTicker(r.cfg.LagInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		heads, err := r.cfg.Client.PartitionSequences(ctx, r.prog.partitions)
		if err != nil {
			if ctx.Err() == nil {
				r.cfg.Logger.Warn("readmodel: reading partition heads failed", "projection", r.cfg.Name, "error", err)
			}
			continue
		}
		r.prog.mu.Lock()
		for p, h := range heads {
			if h > r.prog.heads[p] {
				r.prog.heads[p] = h
			}
		}
		r.prog.headsAt = r.cfg.Now()
		r.prog.mu.Unlock()
	}
}

// Sync waits until the projection has applied everything SierraDB held
// when Sync was called (read with EPSEQ), or until ctx is done or the
// runner stops. SierraDB makes an append visible to EPSEQ asynchronously
// (within milliseconds); to wait for events just appended, pass their
// positions to [Runner.WaitFor].
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
// or until ctx is done or the runner stops.
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

// wait waits until every partition has reached heads.
func (r *Runner[T]) wait(ctx context.Context, heads map[uint16]int64) error {
	for {
		r.prog.mu.Lock()
		ok := r.caughtUpLocked(heads)
		ch := r.prog.changed
		r.prog.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-r.done:
			r.prog.mu.Lock()
			ok := r.caughtUpLocked(heads)
			r.prog.mu.Unlock()
			if ok {
				return nil
			}
			return r.stoppedErr()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (r *Runner[T]) stoppedErr() error {
	if err := r.Err(); err != nil {
		return err
	}
	return ErrClosed
}
