package readmodel

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// State is where a runner is in its life.
type State int

const (
	// Starting: loading checkpoints and subscribing.
	Starting State = iota
	// CatchingUp: applying the history that was stored when the runner
	// started, or when it gained a partition.
	CatchingUp
	// Live: caught up with the heads of its partitions as they were when
	// it started or gained them; new events are applied as they arrive.
	Live
	// Stopped: the runner has ended.
	Stopped
	// Standby: the runner shares the projection with other instances
	// (Config.Leases) and holds no partition at the moment.
	Standby
	// Diverged: the runner holds partitions whose checkpoint is ahead of
	// the server (see [DivergedError] and [HoldDiverged]); it applies the
	// others.
	Diverged
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
	case Standby:
		return "standby"
	case Diverged:
		return "diverged"
	}
	return "unknown"
}

// PartitionStatus is one partition's progress.
type PartitionStatus struct {
	Partition uint16
	// Owned says that this runner works on the partition: always without
	// Config.Leases, and for the partitions it holds leases on with them.
	Owned bool
	// Applied is the last applied sequence, -1 when none. For a partition
	// this runner does not own, it is the stored checkpoint as last read
	// (when the runner last subscribed).
	Applied int64
	// Head is the partition's latest sequence as last read (EPSEQ, every
	// LagInterval, at every subscription and after a reconnection, or the
	// last applied one if the runner applied past it since), -1 when the
	// partition is empty.
	Head int64
	// Lag is Head - Applied. It is negative when the server is behind the
	// checkpoint: not clamped to zero.
	Lag int64
	// Diverged says that the partition's checkpoint is ahead of the
	// server's head (Applied and Head say by how much) or was taken on
	// another server; the runner applies nothing more of it.
	Diverged bool
}

// Status is a snapshot of a runner's progress.
type Status struct {
	Projection string
	// Instance is the runner's name in its lease group; empty without
	// Config.Leases.
	Instance string
	State    State
	// Partitions lists every partition in order.
	Partitions []PartitionStatus
	// Owned counts the partitions this runner works on.
	Owned int
	// Lag is the sum of the lags of the partitions this runner works on
	// and has not found diverged.
	Lag int64
	// Handled counts the events this run has committed (applied, skipped
	// or parked), and Parked those parked.
	Handled uint64
	Parked  uint64
	// Resyncs counts the times the runner subscribed again because a
	// partition's sequence skipped (SierraDB numbers them without gaps),
	// and Conflicts the commits refused because another instance had
	// advanced a checkpoint.
	Resyncs   uint64
	Conflicts uint64
	// Server is the identity of the server (sierradb.Client.ServerID) and
	// RecordedServer the one recorded with the checkpoints, when they
	// differ: the read model was built from another server.
	Server, RecordedServer string
	// HeadsAt is when the heads were last read.
	HeadsAt time.Time
	// Err is the error that ended the runner, if any.
	Err error
}

// Diverged returns the partitions found diverged.
func (s Status) Diverged() []PartitionStatus {
	var out []PartitionStatus
	for _, p := range s.Partitions {
		if p.Diverged {
			out = append(out, p)
		}
	}
	return out
}

// String describes the status for a person: a summary line, then one line
// per partition this runner works on or found diverged, then the others
// as ranges.
func (s Status) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "projection %q", s.Projection)
	if s.Instance != "" {
		fmt.Fprintf(&b, " (instance %s)", s.Instance)
	}
	fmt.Fprintf(&b, " is %s: %d of %d partitions owned, lag %d, %d events handled", s.State, s.Owned, len(s.Partitions), s.Lag, s.Handled)
	if s.Parked > 0 {
		fmt.Fprintf(&b, " (%d parked)", s.Parked)
	}
	if s.Resyncs > 0 || s.Conflicts > 0 {
		fmt.Fprintf(&b, ", %d resyncs, %d checkpoint conflicts", s.Resyncs, s.Conflicts)
	}
	if !s.HeadsAt.IsZero() {
		fmt.Fprintf(&b, ", heads read at %s", s.HeadsAt.Format(time.RFC3339))
	}
	if s.Server != s.RecordedServer {
		fmt.Fprintf(&b, "\n  DIVERGED: the checkpoints were taken on server %s, this is server %s", s.RecordedServer, s.Server)
	}
	if s.Err != nil {
		fmt.Fprintf(&b, "\n  stopped by: %v", s.Err)
	}
	var others []uint16
	for _, p := range s.Partitions {
		switch {
		case p.Diverged:
			fmt.Fprintf(&b, "\n  partition %d: DIVERGED: checkpoint %d, server head %d", p.Partition, p.Applied, p.Head)
		case p.Owned:
			fmt.Fprintf(&b, "\n  partition %d: applied %d, head %d, lag %d", p.Partition, p.Applied, p.Head, p.Lag)
		default:
			others = append(others, p.Partition)
		}
	}
	if len(others) > 0 {
		fmt.Fprintf(&b, "\n  not owned: %s", ranges(others))
	}
	return b.String()
}

// ranges writes sorted partitions as "0-3, 7, 9-10".
func ranges(ps []uint16) string {
	var parts []string
	for i := 0; i < len(ps); {
		j := i
		for j+1 < len(ps) && ps[j+1] == ps[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, fmt.Sprint(ps[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", ps[i], ps[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
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
		Conflicts: pr.nConflicts, HeadsAt: pr.headsAt, Err: err, Server: pr.server, RecordedServer: pr.recorded,
	}
	if r.cfg.Leases != nil {
		st.Instance = r.cfg.Instance
	}
	for _, p := range pr.partitions {
		ps := PartitionStatus{Partition: p, Applied: -1, Head: pr.heads[p], Owned: pr.owned[p]}
		if s, ok := pr.applied[p]; ok {
			ps.Applied = int64(s)
		}
		if h, ok := pr.held[p]; ok {
			ps.Diverged, ps.Applied, ps.Head = true, h.Checkpoint, h.Head
		}
		ps.Lag = ps.Head - ps.Applied
		if ps.Owned {
			st.Owned++
			if !ps.Diverged {
				st.Lag += ps.Lag
			}
		}
		st.Partitions = append(st.Partitions, ps)
	}
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
	// applied holds the checkpoints: of the owned partitions as applied,
	// of the others as last read from the store.
	applied map[uint16]uint64
	heads   map[uint16]int64
	// owned is what the loop works on.
	owned map[uint16]bool
	// targets are the heads when a partition was gained: reaching them is
	// catching up.
	targets map[uint16]int64
	// held are the partitions found diverged under HoldDiverged.
	held map[uint16]DivergedPartition
	// server and recorded differ when the checkpoints were taken on
	// another server.
	server, recorded string
	sharing          bool
	liveClosed       bool
	headsAt          time.Time
	nApplied         uint64
	nParked          uint64
	nResyncs         uint64
	nConflicts       uint64
	// changed is closed and replaced on every commit.
	changed chan struct{}
}

func newProgress() progress {
	return progress{
		applied: make(map[uint16]uint64), heads: make(map[uint16]int64), owned: make(map[uint16]bool),
		targets: make(map[uint16]int64), held: make(map[uint16]DivergedPartition), changed: make(chan struct{}),
	}
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

// ownedTargetsLocked returns the targets of the owned partitions that are
// not held.
func (r *Runner[T]) ownedTargetsLocked() map[uint16]int64 {
	out := make(map[uint16]int64, len(r.prog.owned))
	for p := range r.prog.owned {
		if _, held := r.prog.held[p]; !held {
			out[p] = r.prog.targets[p]
		}
	}
	return out
}

// updateStateLocked sets the state from the progress: diverged while a
// partition is held, standby while sharing without a partition,
// catching-up until the owned partitions reach their targets, then live.
func (r *Runner[T]) updateStateLocked() {
	pr := &r.prog
	if pr.state == Stopped || pr.state == Starting {
		return
	}
	prev := pr.state
	switch {
	case len(pr.held) > 0:
		pr.state = Diverged
	case pr.sharing && len(pr.owned) == 0:
		pr.state = Standby
	case r.caughtUpLocked(r.ownedTargetsLocked()):
		pr.state = Live
		if !pr.liveClosed {
			pr.liveClosed = true
			close(r.live)
		}
	default:
		pr.state = CatchingUp
	}
	if pr.state != prev {
		r.cfg.Logger.Info("readmodel: projection is "+pr.state.String(), "projection", r.cfg.Name,
			"owned", len(pr.owned), "handled", pr.nApplied)
	}
}

// changedLocked wakes the waiters of Sync and WaitFor.
func (p *progress) changedLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// ownedList returns the owned partitions, sorted.
func (p *progress) ownedList() []uint16 {
	return slices.Sorted(maps.Keys(p.owned))
}
