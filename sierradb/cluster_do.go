package sierradb

// Sending commands to a cluster: to the node that coordinates the
// partition, and to other nodes when that fails.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill/internal/backoff"
)

// failoverBackoff spaces the attempts of one call.
func failoverBackoff() *backoff.Backoff {
	return backoff.Policy{Initial: 25 * time.Millisecond, Max: 500 * time.Millisecond, Jitter: 0.3}.Start()
}

// attempts runs try on one node after another, as next orders them, until
// it succeeds, fails with an error another node would not change (retry
// reports false), the caller's context ends or FailoverTimeout passes. It
// returns the last error.
func (cl *cluster) attempts(ctx context.Context, next func() []*clusterNode,
	try func(ctx context.Context, n *clusterNode) error, retry func(err error) bool) error {
	deadline := time.Now().Add(cl.cfg.FailoverTimeout)
	b := failoverBackoff()
	tried := map[*clusterNode]bool{}
	var last error
	for {
		var n *clusterNode
		for _, cand := range next() {
			if !tried[cand] {
				n = cand
				break
			}
		}
		if n == nil {
			// Every node failed once: start over.
			clear(tried)
			n = next()[0]
		}
		at := time.Now()
		err := try(ctx, n)
		if err == nil {
			return nil
		}
		last = err
		if !retry(err) || ctx.Err() != nil || time.Now().After(deadline) {
			return last
		}
		tried[n] = true
		cl.noteFailure(ctx, n, err, at)
		if err := waitCtx(ctx, b.Next()); err != nil {
			return last
		}
	}
}

func waitCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// doAny sends a command that any node answers.
func (cl *cluster) doAny(ctx context.Context, args ...any) (any, error) {
	var v any
	err := cl.attempts(ctx, cl.anyOrder, func(ctx context.Context, n *clusterNode) error {
		var err error
		v, err = n.do(ctx, args...)
		if err == nil || !isConnErr(err) {
			n.markUp()
		}
		if errors.Is(err, redis.Nil) {
			return nil
		}
		return err
	}, isConnErr)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, redis.Nil
	}
	return v, nil
}

// doRead sends a read of partition p to its coordinator, or, when that
// fails, to the node that coordinates it after the failure. A node holding
// no replica forwards to the coordinator; a plain replica may serve an
// older copy, so it is asked only when no other node answers.
func (cl *cluster) doRead(ctx context.Context, p uint16, args ...any) (any, error) {
	if err := cl.ensure(ctx); err != nil {
		return nil, err
	}
	var v any
	isNil := false
	err := cl.attempts(ctx, func() []*clusterNode { return cl.order(p, true) },
		func(ctx context.Context, n *clusterNode) error {
			var err error
			v, err = n.do(ctx, args...)
			isNil = errors.Is(err, redis.Nil)
			if isNil {
				return nil
			}
			return err
		}, failoverWorthy)
	if err != nil {
		return nil, err
	}
	if isNil {
		return nil, redis.Nil
	}
	return v, nil
}

// doRead sends a read of partition p: to the server, or on a cluster to
// the partition's coordinator.
func (c *Client) doRead(ctx context.Context, p uint16, args ...any) (any, error) {
	if c.cl == nil {
		return c.do(ctx, args...)
	}
	if c.isClosed() {
		return nil, ErrClosed
	}
	return c.cl.doRead(ctx, p, args...)
}

// partitionOnCluster returns the partition of a partition key on a
// cluster client, and 0 on a single server, whose client needs no
// partition to route (and must not ask the server for its count).
func (c *Client) partitionOnCluster(ctx context.Context, key func() [16]byte) (uint16, error) {
	if c.cl == nil {
		return 0, nil
	}
	n, err := c.PartitionCount(ctx)
	if err != nil {
		return 0, err
	}
	return PartitionHash(key()) % n, nil
}

// writeSpec says how an append may be retried on another node.
type writeSpec struct {
	// exact: every event has an exact (or empty) expected version, so a
	// retry cannot store an event twice: if an earlier attempt landed, the
	// retry fails its version check.
	exact bool
	// landed reports whether the append's events are stored, read from
	// the coordinator.
	landed func(ctx context.Context) (bool, error)
	// conflictCovers reports whether a version conflict names a version
	// that includes this append's first event, so that reading it back is
	// worth a wait until it is visible.
	conflictCovers func(*WrongExpectedVersionError) bool
}

// landedWait bounds the wait for an append reported by a conflict to
// become readable on the coordinator (measured: visible within 66 ms on
// every node, docs/cluster.md).
const landedWait = 2 * time.Second

// doWrite sends an append to partition p's coordinator and fails over to
// the partition's other holders (and then any node, which forwards) with
// the same event ids and expected versions. An attempt whose outcome is
// unknown (the connection failed after sending, or the cluster answered
// with a failure) may have stored the events; a later version conflict is
// then checked by reading the events back: found, the append succeeded
// (landed is true and v is nil). An append without exact expected versions
// is retried only after a failure that cannot have stored it; otherwise
// it is checked once and its error returned when not found.
func (cl *cluster) doWrite(ctx context.Context, p uint16, spec writeSpec, args ...any) (v any, landed bool, err error) {
	if err := cl.ensure(ctx); err != nil {
		return nil, false, err
	}
	ambiguous := false
	stop := false
	err = cl.attempts(ctx, func() []*clusterNode { return cl.order(p, false) },
		func(ctx context.Context, n *clusterNode) error {
			var err error
			v, err = n.do(ctx, args...)
			if err == nil {
				n.markUp()
				return nil
			}
			if !failoverWorthy(err) {
				stop = true
				return err
			}
			if !unsent(err) {
				ambiguous = true
				if !spec.exact {
					stop = true
				}
			}
			return err
		}, func(error) bool { return !stop })
	if err == nil || !ambiguous {
		return v, false, err
	}
	// An earlier attempt may have stored the events.
	var wev *WrongExpectedVersionError
	conflict := errors.As(err, &wev)
	if ctx.Err() != nil {
		return nil, false, err
	}
	wait := time.Duration(0)
	if conflict && wev.Parsed && spec.conflictCovers != nil && spec.conflictCovers(wev) {
		wait = landedWait
	}
	ok, lerr := cl.checkLanded(ctx, spec.landed, wait)
	if lerr != nil {
		return nil, false, errors.Join(err, fmt.Errorf("sierradb: reading back an append whose first attempt failed: %w", lerr))
	}
	if ok {
		return nil, true, nil
	}
	return nil, false, err
}

// checkLanded asks landed once, and again until wait passes.
func (cl *cluster) checkLanded(ctx context.Context, landed func(context.Context) (bool, error), wait time.Duration) (bool, error) {
	deadline := time.Now().Add(wait)
	for {
		ok, err := landed(ctx)
		if err != nil || ok || time.Now().After(deadline) {
			return ok, err
		}
		if err := waitCtx(ctx, 20*time.Millisecond); err != nil {
			return false, err
		}
	}
}

// unsent reports a failure that happened before the request reached a
// server: the connection could not be opened.
func unsent(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// partitionSequences reads the heads of partitions on their coordinators,
// one pipeline per coordinator.
func (cl *cluster) partitionSequences(ctx context.Context, partitions []uint16) (map[uint16]int64, error) {
	if err := cl.ensure(ctx); err != nil {
		return nil, err
	}
	partitions = slices.Compact(slices.Sorted(slices.Values(partitions)))
	out := make(map[uint16]int64, len(partitions))
	for len(out) < len(partitions) {
		groups := map[*clusterNode][]uint16{}
		var orphans []uint16
		for _, p := range partitions {
			if _, ok := out[p]; ok {
				continue
			}
			if n := cl.coordinator(p); n != nil && !n.down(time.Now()) {
				groups[n] = append(groups[n], p)
			} else {
				orphans = append(orphans, p)
			}
		}
		progress := false
		for n, ps := range groups {
			got, err := pipelineSequences(ctx, n.rdb, ps)
			if err != nil {
				if ctx.Err() != nil {
					return nil, err
				}
				orphans = append(orphans, ps...)
				continue
			}
			for p, s := range got {
				out[p] = s
			}
			progress = true
		}
		// What the coordinators did not answer goes the long way, one
		// partition at a time, with failover.
		for _, p := range orphans {
			v, err := cl.doRead(ctx, p, "EPSEQ", strconv.Itoa(int(p)))
			switch {
			case errors.Is(err, redis.Nil):
				out[p] = -1
			case err != nil:
				return nil, fmt.Errorf("sierradb: sequence of partition %d: %w", p, err)
			default:
				s, ok := v.(int64)
				if !ok {
					return nil, replyTypeError("EPSEQ", v)
				}
				out[p] = s
			}
			progress = true
		}
		if !progress {
			return nil, errors.New("sierradb: partition sequences: no node answered")
		}
	}
	return out, nil
}
