package pubsub

// Divergence of a consumer group: its positions must belong to the
// server's history. When a group subscribes, and before its subscription
// resumes after a lost connection, the subscriber compares each position
// with its partition's head (EPSEQ) and the server's identity
// (sierradb.Client.ServerID) with the one recorded with the positions.

import (
	"context"
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
// reports (a cluster subscription's *sierradb.DivergedError ends the
// group's subscription as well, and is logged).
var ErrDiverged = sierradb.ErrDiverged

// ServerRecorder is implemented by checkpoint stores that keep, with a
// group's positions, the identity of the SierraDB server they count
// events of (sierradb.Client.ServerID). A subscriber with a consumer group
// records it when it subscribes, and refuses positions recorded on another
// server. [MemoryCheckpoints] implements it; without it, a group is
// checked against the partitions' heads only.
type ServerRecorder interface {
	// RecordServer records id for (group, topic) unless one is recorded
	// already, and returns the one recorded.
	RecordServer(ctx context.Context, group, topic, id string) (string, error)
}

// DivergedPartition is a partition whose position is ahead of the
// server's head.
type DivergedPartition struct {
	Partition uint16
	// Position is the group's last processed sequence (or, after a lost
	// connection, the last delivered one); Head is the partition's latest
	// sequence on the server, -1 when it is empty.
	Position, Head int64
}

// DivergedError says that a consumer group's positions do not belong to
// the server's history: a partition's position is ahead of its head (the
// server lost events), or the positions were recorded on another server
// (Recorded and Server differ). Delivering from the positions would skip
// the events the server now stores below them, so the subscription fails
// (Subscribe returns the error) or ends (its output channel closes, and
// the error is logged). It matches [ErrDiverged].
type DivergedError struct {
	Group, Topic     string
	Partitions       []DivergedPartition
	Server, Recorded string
}

func (e *DivergedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sierradb/pubsub: consumer group %q on %q has diverged from the SierraDB server: ", e.Group, e.Topic)
	if e.Server != e.Recorded {
		fmt.Fprintf(&b, "its positions were recorded on server %s, this is server %s", e.Recorded, e.Server)
	} else {
		for i, p := range e.Partitions {
			if i == 8 {
				fmt.Fprintf(&b, " and %d more", len(e.Partitions)-i)
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "partition %d position %d is ahead of the head %d", p.Partition, p.Position, p.Head)
		}
	}
	b.WriteString("; nothing is delivered from these positions: point the subscriber at the right server, " +
		"restore the server's data, or give the group new positions")
	return b.String()
}

// Is reports whether target is [ErrDiverged].
func (e *DivergedError) Is(target error) bool { return target == ErrDiverged }

// checkServer records or compares the server's identity for the group.
func (r *run) checkServer(ctx context.Context) error {
	c := r.s.cfg.Client
	id, err := c.ServerID(ctx)
	if err != nil {
		return err
	}
	r.serverID = id
	rec, ok := r.s.cfg.Checkpoints.(ServerRecorder)
	if !ok {
		return nil
	}
	got, err := rec.RecordServer(ctx, r.s.cfg.ConsumerGroup, r.topic, id)
	if err != nil {
		return fmt.Errorf("recording the server's identity for group %q: %w", r.s.cfg.ConsumerGroup, err)
	}
	if got != id {
		return &DivergedError{Group: r.s.cfg.ConsumerGroup, Topic: r.topic, Server: id, Recorded: got}
	}
	return nil
}

// compare checks positions (the last processed or delivered sequence per
// partition) against the partitions' heads, and the server's identity
// against the one the run started with.
func (r *run) compare(ctx context.Context, last map[uint16]int64) (*DivergedError, error) {
	c := r.s.cfg.Client
	id, err := c.ServerID(ctx)
	if err != nil {
		return nil, err
	}
	parts := slices.Sorted(maps.Keys(last))
	heads, err := c.PartitionSequences(ctx, parts)
	if err != nil {
		return nil, err
	}
	if id == r.serverID && len(headwait.Ahead(last, heads)) > 0 {
		if heads, err = r.awaitHeads(ctx, last, heads); err != nil {
			return nil, err
		}
	}
	div := &DivergedError{Group: r.s.cfg.ConsumerGroup, Topic: r.topic, Server: id, Recorded: r.serverID}
	for _, p := range parts {
		if l := last[p]; l >= 0 && (heads[p] < l || id != r.serverID) {
			div.Partitions = append(div.Partitions, DivergedPartition{Partition: p, Position: l, Head: heads[p]})
		}
	}
	if len(div.Partitions) == 0 && id == r.serverID {
		return nil, nil
	}
	return div, nil
}

// awaitHeads waits, up to ConfirmWait, for the heads of the partitions
// whose position is ahead of them to catch up, and returns the heads last
// read: see package internal/headwait for why a position ahead of the
// head is not yet a divergence (tested: TestGroupAheadOfUnconfirmedHead;
// the server's behaviour is the conformance suite's known difference
// "subscription-ahead-of-head").
func (r *run) awaitHeads(ctx context.Context, last, heads map[uint16]int64) (map[uint16]int64, error) {
	r.s.cfg.Logger.Info("sierradb/pubsub: a group's position is ahead of its partition's head; "+
		"waiting for the server to confirm the events in between",
		"topic", r.topic, "consumer_group", r.s.cfg.ConsumerGroup, "confirm_wait", r.s.cfg.ConfirmWait)
	return headwait.Await(ctx, r.s.cfg.Client, last, heads, r.s.cfg.ConfirmWait)
}

// resume is the subscription's Resume hook: it retries its own failures
// (the server may still be down) until ctx is done.
func (r *run) resume(ctx context.Context, next map[uint16]uint64) error {
	last := make(map[uint16]int64, len(next))
	for p, n := range next {
		last[p] = int64(n) - 1
	}
	retry := backoff.Policy{Initial: 20 * time.Millisecond, Max: 2 * time.Second, Jitter: 0.2}.Start()
	for {
		div, err := r.compare(ctx, last)
		if err == nil {
			if div != nil {
				return div
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.s.cfg.Logger.Warn("sierradb/pubsub: checking the server before resuming failed; retrying",
			"topic", r.topic, "consumer_group", r.s.cfg.ConsumerGroup, "error", err)
		if err := retry.Wait(ctx); err != nil {
			return err
		}
	}
}

// RecordServer implements [ServerRecorder].
func (m *MemoryCheckpoints) RecordServer(_ context.Context, group, topic, id string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := checkpointKey{group, topic}
	if m.servers == nil {
		m.servers = make(map[checkpointKey]string)
	}
	if got, ok := m.servers[k]; ok {
		return got, nil
	}
	m.servers[k] = id
	return id, nil
}
