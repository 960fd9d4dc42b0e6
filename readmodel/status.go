package readmodel

import (
	"slices"
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
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{
		Projection: r.cfg.Name, State: r.state, Handled: r.nApplied, Parked: r.nParked, Resyncs: r.nResyncs,
		HeadsAt: r.headsAt, Err: r.err,
	}
	for _, p := range r.partitions {
		ps := PartitionStatus{Partition: p, Applied: -1, Head: r.heads[p]}
		if s, ok := r.applied[p]; ok {
			ps.Applied = int64(s)
		}
		ps.Lag = max(0, ps.Head-ps.Applied)
		st.Lag += ps.Lag
		st.Partitions = append(st.Partitions, ps)
	}
	slices.SortFunc(st.Partitions, func(a, b PartitionStatus) int { return int(a.Partition) - int(b.Partition) })
	return st
}
