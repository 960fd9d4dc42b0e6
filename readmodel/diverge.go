package readmodel

// Divergence: the server's history no longer contains what the read model
// has applied. The runner compares each checkpoint with its partition's
// head (EPSEQ) when it starts, when it gains a partition and before its
// subscription resumes after a lost connection, and the server's identity
// (sierradb.Client.ServerID) with the one recorded with the checkpoints.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/esmill/esmill/internal/backoff"
	"github.com/esmill/esmill/internal/headwait"
	"github.com/esmill/esmill/sierradb"
)

// ErrDiverged is matched by a [*DivergedError]. It is
// [sierradb.ErrDiverged] itself: one sentinel for every divergence esmill
// reports.
var ErrDiverged = sierradb.ErrDiverged

// DivergedPartition is a partition whose checkpoint is ahead of the
// server's head: the server no longer holds events the read model has
// applied.
type DivergedPartition struct {
	Partition uint16
	// Checkpoint is the last applied sequence (or, after a lost
	// connection, the last one delivered).
	Checkpoint int64
	// Head is the partition's latest sequence on the server, -1 when the
	// partition is empty.
	Head int64
}

// DivergedError says that a projection's checkpoints do not belong to the
// server's history: a partition's checkpoint is ahead of its head (the
// server lost its tail: a damaged last record, a restore from an older
// backup, a memory-mode server restarted), or the checkpoints were taken
// on another server (Recorded and Server differ). Subscribing from the
// checkpoints would skip the events the server now stores at those
// positions, so the runner does not: it stops or holds the partitions
// ([Config.OnDiverged]). It matches [ErrDiverged].
type DivergedError struct {
	Projection string
	// Partitions lists the diverged partitions with both numbers; with
	// another server, every partition the runner worked on.
	Partitions []DivergedPartition
	// Server is the identity of the server the runner talks to, and
	// Recorded the one recorded with the checkpoints, when they differ.
	Server, Recorded string
	// Err is the subscription's error when a cluster subscription found
	// the divergence (a *sierradb.DivergedError: the partition's new
	// coordinator lacks events already delivered); nil otherwise.
	Err error
}

// Unwrap returns Err.
func (e *DivergedError) Unwrap() error { return e.Err }

func (e *DivergedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "readmodel: projection %q has diverged from the SierraDB server: ", e.Projection)
	if e.Err != nil {
		fmt.Fprintf(&b, "%v", e.Err)
	} else if e.Server != e.Recorded {
		fmt.Fprintf(&b, "its checkpoints were taken on server %s, this is server %s", e.Recorded, e.Server)
	} else {
		for i, p := range e.Partitions {
			if i == 8 {
				fmt.Fprintf(&b, " and %d more", len(e.Partitions)-i)
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "partition %d checkpoint %d is ahead of the head %d", p.Partition, p.Checkpoint, p.Head)
		}
	}
	b.WriteString("; the server lacks events the read model has applied, so nothing more of these partitions is " +
		"applied: point the runner at the right server, restore the server's data, or rebuild the read model " +
		"(Store.Reset) if the server's history is now the truth")
	return b.String()
}

// Is reports whether target is [ErrDiverged].
func (e *DivergedError) Is(target error) bool { return target == ErrDiverged }

// checkServer records the server's identity with the checkpoints (or
// finds the one recorded) at start.
func (r *Runner[T]) checkServer(ctx context.Context) error {
	cfg := &r.cfg
	id, err := cfg.Client.ServerID(ctx)
	if err != nil {
		return fmt.Errorf("readmodel: %s: %w", cfg.Name, err)
	}
	r.serverID = id
	rec, ok := cfg.Store.(ServerRecorder)
	if !ok {
		cfg.Logger.Warn("readmodel: the store does not record the server's identity; a read model pointed at another server is noticed only by its heads",
			"projection", cfg.Name, "store", fmt.Sprintf("%T", cfg.Store))
		return nil
	}
	got, err := rec.RecordServer(ctx, cfg.Name, id)
	if err != nil {
		return fmt.Errorf("readmodel: %s: record the server's identity: %w", cfg.Name, err)
	}
	if got != id {
		return &DivergedError{Projection: cfg.Name, Server: id, Recorded: got}
	}
	return nil
}

// headsBelow returns the partitions whose head is below last (the last
// applied or delivered sequence; absent: none).
func headsBelow(last map[uint16]int64, heads map[uint16]int64) []DivergedPartition {
	var out []DivergedPartition
	for _, p := range slices.Sorted(maps.Keys(last)) {
		if l := last[p]; l >= 0 && heads[p] < l {
			out = append(out, DivergedPartition{Partition: p, Checkpoint: l, Head: heads[p]})
		}
	}
	return out
}

// awaitHeads gives the heads of the partitions whose checkpoint (in last)
// is ahead of them [Config.ConfirmWait] to catch up, and returns the heads
// last read; see package internal/headwait for why a checkpoint ahead of
// the head on the same server is not yet a divergence (tested:
// TestAheadOfUnconfirmedHead).
func (r *Runner[T]) awaitHeads(ctx context.Context, last, heads map[uint16]int64) (map[uint16]int64, error) {
	ahead := headwait.Ahead(last, heads)
	if len(ahead) == 0 {
		return heads, nil
	}
	r.cfg.Logger.Info("readmodel: a checkpoint is ahead of its partition's head; waiting for the server to confirm the events in between",
		"projection", r.cfg.Name, "partitions", ahead, "confirm_wait", r.cfg.ConfirmWait)
	return headwait.Await(ctx, r.cfg.Client, last, heads, r.cfg.ConfirmWait)
}

// resumeCheck is the subscription's Resume hook: before it resumes after a
// lost connection, the server must still be the same and hold every
// delivered event. It retries its own failures (the server may still be
// down) until ctx is done.
func (r *Runner[T]) resumeCheck(ctx context.Context, next map[uint16]uint64) error {
	cfg := &r.cfg
	retry := backoff.Policy{Initial: 20 * time.Millisecond, Max: 2 * time.Second, Jitter: 0.2}.Start()
	for {
		div, err := r.compareAfterReconnect(ctx, next)
		if err == nil {
			if div != nil {
				cfg.Logger.Error("readmodel: the server is behind the read model after a reconnection", "projection", cfg.Name, "error", div)
				return div
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		cfg.Logger.Warn("readmodel: checking the server before resuming failed; retrying", "projection", cfg.Name, "error", err)
		if err := retry.Wait(ctx); err != nil {
			return err
		}
	}
}

func (r *Runner[T]) compareAfterReconnect(ctx context.Context, next map[uint16]uint64) (*DivergedError, error) {
	cfg := &r.cfg
	id, err := cfg.Client.ServerID(ctx)
	if err != nil {
		return nil, err
	}
	parts := slices.Sorted(maps.Keys(next))
	last := make(map[uint16]int64, len(next))
	for p, n := range next {
		last[p] = int64(n) - 1
	}
	heads, err := cfg.Client.PartitionSequences(ctx, parts)
	if err != nil {
		return nil, err
	}
	if id == r.serverID {
		if heads, err = r.awaitHeads(ctx, last, heads); err != nil {
			return nil, err
		}
	}
	r.prog.mu.Lock()
	for p, h := range heads {
		r.prog.heads[p] = h
	}
	r.prog.mu.Unlock()
	if id != r.serverID {
		div := &DivergedError{Projection: cfg.Name, Server: id, Recorded: r.serverID}
		for _, p := range parts {
			div.Partitions = append(div.Partitions, DivergedPartition{Partition: p, Checkpoint: last[p], Head: heads[p]})
		}
		return div, nil
	}
	if d := headsBelow(last, heads); len(d) > 0 {
		return &DivergedError{Projection: cfg.Name, Partitions: d, Server: id, Recorded: id}, nil
	}
	return nil, nil
}

// clusterDiverged turns a cluster subscription that ended with a
// *sierradb.DivergedError (a partition's new coordinator lacks events
// already delivered) into a [*DivergedError] wrapping it, so that
// [Config.OnDiverged] applies to it as to any other divergence. Other
// errors are returned as they are.
func (r *Runner[T]) clusterDiverged(err error) error {
	var sdiv *sierradb.DivergedError
	if !errors.As(err, &sdiv) {
		return err
	}
	r.prog.mu.Lock()
	server := r.prog.server
	r.prog.mu.Unlock()
	return &DivergedError{
		Projection: r.cfg.Name, Server: server, Recorded: server, Err: sdiv,
		Partitions: []DivergedPartition{{Partition: sdiv.Partition, Checkpoint: int64(sdiv.Delivered), Head: sdiv.Head}},
	}
}

// diverged applies the policy to a divergence found by a check: under
// StopDiverged it returns the error that ends the runner; under
// HoldDiverged it holds the partitions and returns nil.
func (r *Runner[T]) diverged(d *DivergedError) error {
	r.prog.mu.Lock()
	for _, p := range d.Partitions {
		r.prog.held[p.Partition] = p
	}
	if d.Server != d.Recorded {
		r.prog.server, r.prog.recorded = d.Server, d.Recorded
	}
	r.updateStateLocked()
	r.prog.mu.Unlock()
	if r.cfg.OnDiverged == StopDiverged {
		return d
	}
	r.cfg.Logger.Error("readmodel: holding diverged partitions; the others go on", "projection", r.cfg.Name, "error", d)
	return nil
}
