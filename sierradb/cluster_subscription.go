package sierradb

// Subscriptions on a cluster. SierraDB 0.3.1's EPSUB delivers only the
// partitions the node it runs on holds (EPSUB * on every node delivers each
// partition RF times), and only a partition's coordinator delivers live
// events at once (a replica trails by one event, and after missing writes
// stays stale). So a cluster subscription runs one leg per coordinating
// node, an EPSUB naming exactly the partitions that node coordinates, and
// moves a partition's leg when its coordinator changes, from the position
// after the last event it delivered. It delivers each event once: anything
// at or below that position is dropped.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// ErrDiverged: the server's history is not the one already delivered or
// applied, so following it would deliver a different history under the
// same positions. It is esmill's one sentinel for divergence:
// readmodel.ErrDiverged and pubsub.ErrDiverged are this same value, so
// errors.Is(err, sierradb.ErrDiverged) matches a [*DivergedError] of a
// cluster subscription, a *readmodel.DivergedError (which wraps the
// former when a cluster subscription found it) and a
// *pubsub.DivergedError alike (tested: TestDivergedOneVocabulary).
var ErrDiverged = errors.New("esmill: the server's history diverged from what was delivered")

// DivergedError ends a cluster subscription when a partition's new
// coordinator lacks events the subscription delivered (its head is below
// the last delivered sequence), or delivers a different event at a
// delivered sequence. On SierraDB 0.3.1 this follows the death or cut-off
// of a coordinator that had acknowledged appends its replicas had not
// confirmed (TestKnownDifferenceCoordinatorDeathFreezesPartition); no
// client can repair it. It matches [ErrDiverged].
type DivergedError struct {
	Partition uint16
	// Node is the address of the node that now coordinates the partition.
	Node string
	// Delivered is the last sequence delivered, DeliveredID its event.
	Delivered   uint64
	DeliveredID uuid.UUID
	// Head is the node's head of the partition (-1: empty) when it is
	// below Delivered; Other is the different event found at Delivered.
	Head  int64
	Other uuid.UUID
}

func (e *DivergedError) Error() string {
	what := fmt.Sprintf("its head there is %d", e.Head)
	if e.Other != uuid.Nil {
		what = fmt.Sprintf("it holds event %s there instead of %s", e.Other, e.DeliveredID)
	}
	return fmt.Sprintf("sierradb: partition %d diverged: sequence %d was delivered, but on %s, which coordinates it now, %s; "+
		"acknowledged events were lost by the cluster (see docs/cluster.md): rebuild what was derived from this partition",
		e.Partition, e.Delivered, e.Node, what)
}

// Is reports whether target is [ErrDiverged].
func (e *DivergedError) Is(target error) bool { return target == ErrDiverged }

// clusterSub is the state of a cluster subscription; s.spec.next is the
// next sequence to deliver per partition.
type clusterSub struct {
	s  *Subscription
	cl *cluster

	// fwd serialises delivery (and reads of s.spec.next and lastID).
	fwd    sync.Mutex
	lastID map[uint16]uuid.UUID

	legs  map[int]*leg
	ended chan *leg
	wg    sync.WaitGroup
	moves atomic.Int64
}

// leg is one EPSUB on one node.
type leg struct {
	node  *clusterNode
	parts []uint16
	sub   *Subscription
	done  chan struct{} // closed when its forwarder has stopped
	// stopped is set when the cluster subscription stops the leg: what
	// it still holds is dropped, to be delivered by the leg that follows.
	stopped atomic.Bool
}

func (c *Client) subscribeCluster(ctx context.Context, spec subSpec) (*Subscription, error) {
	cl := c.cl
	if err := cl.ensure(ctx); err != nil {
		return nil, err
	}
	spec.all = false
	s := newSubscription(c, spec, "")
	cs := &clusterSub{s: s, cl: cl, lastID: map[uint16]uuid.UUID{}, legs: map[int]*leg{}, ended: make(chan *leg, len(cl.nodes))}
	s.cs = cs
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	// Set up every partition's leg before returning, so that a
	// subscription that is returned covers every partition.
	for {
		coord, _ := cl.coordinators()
		missing, err := cs.arrange(ctx, coord)
		if err == nil && missing == 0 {
			break
		}
		if err == nil {
			err = fmt.Errorf("no coordinator found for %d partitions", missing)
		}
		if errors.Is(err, ErrDiverged) || ctx.Err() != nil {
			cs.stopLegs()
			s.cancel()
			c.forget(s)
			return nil, fmt.Errorf("sierradb: subscribe to %s: %w", spec.what, errors.Join(err, ctx.Err()))
		}
		at := time.Now()
		if werr := waitCtx(ctx, 50*time.Millisecond); werr == nil {
			werr = cl.refresh(ctx, at)
		}
	}
	go cs.run()
	return s, nil
}

// arrange makes the legs match the coordinator map: it stops each leg
// whose node no longer coordinates exactly its partitions and starts the
// missing ones. It returns how many partitions remain without a leg.
func (cs *clusterSub) arrange(ctx context.Context, coord []int) (int, error) {
	want := map[int][]uint16{}
	missing := 0
	for _, p := range cs.s.spec.partitions {
		if int(p) < len(coord) && coord[p] >= 0 {
			want[coord[p]] = append(want[coord[p]], p)
		} else {
			missing++
		}
	}
	for i, l := range cs.legs {
		if !slices.Equal(l.parts, want[i]) {
			cs.stopLeg(l)
			delete(cs.legs, i)
			cs.moved()
		}
	}
	var errs []error
	for i, parts := range want {
		if _, ok := cs.legs[i]; ok {
			continue
		}
		l, err := cs.startLeg(ctx, cs.cl.nodes[i], parts)
		if err != nil {
			if errors.Is(err, ErrDiverged) {
				return 0, err
			}
			errs = append(errs, err)
			missing += len(parts)
			cs.cl.noteFailure(ctx, cs.cl.nodes[i], err, time.Now())
			continue
		}
		cs.legs[i] = l
	}
	if missing > 0 && len(errs) > 0 {
		return missing, errors.Join(errs...)
	}
	return missing, nil
}

// startLeg subscribes to parts on node n from the positions after what
// was delivered, after checking that the node's history still holds the
// last delivered event of each partition.
func (cs *clusterSub) startLeg(ctx context.Context, n *clusterNode, parts []uint16) (*leg, error) {
	s := cs.s
	ctx, cancel := context.WithTimeout(ctx, s.c.cfg.ReadTimeout)
	defer cancel()
	cs.fwd.Lock()
	next := make(map[uint16]uint64, len(parts))
	last := make(map[uint16]uuid.UUID)
	for _, p := range parts {
		next[p] = s.spec.next[p]
		if id, ok := cs.lastID[p]; ok {
			last[p] = id
		}
	}
	cs.fwd.Unlock()
	if len(last) > 0 {
		heads, err := pipelineSequences(ctx, n.rdb, slices.Sorted(maps.Keys(last)))
		if err != nil {
			return nil, err
		}
		for p, id := range last {
			if heads[p] < int64(next[p])-1 {
				return nil, &DivergedError{Partition: p, Node: n.addr, Delivered: next[p] - 1, DeliveredID: id, Head: heads[p]}
			}
		}
		ids, err := eventsAt(ctx, n, next, last)
		if err != nil {
			return nil, err
		}
		for p, id := range last {
			if other, ok := ids[p]; ok && other != id {
				return nil, &DivergedError{Partition: p, Node: n.addr, Delivered: next[p] - 1, DeliveredID: id, Head: heads[p], Other: other}
			}
		}
	}
	spec := subSpec{
		partitions: parts,
		next:       next,
		window:     s.spec.window,
		filter:     s.spec.filter,
		what:       fmt.Sprintf("%s on node %d (%s)", s.spec.what, n.index, n.addr),
	}
	sub := newSubscription(s.c, spec, n.addr)
	sub.leg = true
	sub.owner = s
	sub.heads = func(ctx context.Context, ps []uint16) (map[uint16]int64, error) {
		return pipelineSequences(ctx, n.rdb, ps)
	}
	conn, r, subID, err := sub.connect(ctx, 1)
	if err != nil {
		sub.cancel()
		return nil, err
	}
	l := &leg{node: n, parts: parts, sub: sub, done: make(chan struct{})}
	go sub.run(conn, r, subID)
	cs.wg.Add(1)
	go cs.forward(l)
	return l, nil
}

// forward passes a leg's events on, dropping what was delivered already.
func (cs *clusterSub) forward(l *leg) {
	defer cs.wg.Done()
	defer close(l.done)
	s := cs.s
	for ev := range l.sub.Events() {
		if l.stopped.Load() {
			continue
		}
		if err := cs.deliver(l, ev); err != nil {
			s.setErr(err)
			s.cancel()
		}
	}
	if l.stopped.Load() {
		return
	}
	select {
	case cs.ended <- l:
	case <-s.ctx.Done():
	}
}

func (cs *clusterSub) deliver(l *leg, ev Event) error {
	s := cs.s
	cs.fwd.Lock()
	defer cs.fwd.Unlock()
	p := ev.PartitionID
	next := s.spec.next[p]
	if ev.PartitionSequence < next {
		if ev.PartitionSequence+1 == next {
			if id, ok := cs.lastID[p]; ok && id != ev.ID {
				return &DivergedError{Partition: p, Node: l.node.addr, Delivered: ev.PartitionSequence, DeliveredID: id, Head: -1, Other: ev.ID}
			}
		}
		l.sub.ack(ev.tag)
		return nil
	}
	select {
	case s.events <- ev:
		s.spec.next[p] = ev.PartitionSequence + 1
		cs.lastID[p] = ev.ID
		return nil
	case <-s.ctx.Done():
		return nil
	}
}

// run owns the legs until the subscription closes or fails: it moves
// partitions when the probe finds another coordinator and replaces a leg
// whose connection ended.
func (cs *clusterSub) run() {
	s := cs.s
	defer close(s.done)
	defer close(s.events)
	defer s.c.forget(s)
	defer cs.stopLegs()
	retry := time.NewTicker(cs.cl.cfg.ProbeInterval)
	defer retry.Stop()
	for {
		coord, changed := cs.cl.coordinators()
		if _, err := cs.arrange(s.ctx, coord); err != nil {
			if errors.Is(err, ErrDiverged) {
				s.setErr(err)
				return
			}
			if s.ctx.Err() == nil {
				s.c.cfg.Logger.Warn("sierradb: cluster subscription: a partition has no leg yet", "subscription", s.spec.what, "error", err)
			}
		}
		select {
		case <-s.ctx.Done():
			select {
			case <-s.c.closing:
				s.setErr(ErrClosed)
			default:
			}
			return
		case <-changed:
		case <-retry.C:
		case l := <-cs.ended:
			at := time.Now()
			err := l.sub.Err()
			if cur, ok := cs.legs[l.node.index]; !ok || cur != l {
				continue
			}
			delete(cs.legs, l.node.index)
			cs.moved()
			var se *ServerError
			if errors.As(err, &se) && !failoverWorthy(err) {
				s.setErr(err)
				return
			}
			s.c.cfg.Logger.Warn("sierradb: cluster subscription leg ended; moving its partitions",
				"subscription", s.spec.what, "node", l.node.addr, "error", err)
			cs.cl.noteFailure(s.ctx, l.node, err, at)
		}
	}
}

func (cs *clusterSub) stopLeg(l *leg) {
	l.stopped.Store(true)
	l.sub.Close()
	<-l.done
}

func (cs *clusterSub) stopLegs() {
	for i, l := range cs.legs {
		cs.stopLeg(l)
		delete(cs.legs, i)
	}
	// Forwarders of legs replaced earlier may still be handing in their
	// end; they stop on s.ctx.
	cs.s.cancel()
	cs.wg.Wait()
}

// Moves counts how often a cluster subscription replaced a leg (a
// partition moved to another node, or a node's connection ended); 0 for
// a subscription on one server.
func (s *Subscription) Moves() int {
	if s.cs == nil {
		return 0
	}
	return int(s.cs.moves.Load())
}

// eventsAt reads, on node n, the id of the event at the last delivered
// sequence (next - 1) of each partition in last, in one round trip.
func eventsAt(ctx context.Context, n *clusterNode, next map[uint16]uint64, last map[uint16]uuid.UUID) (map[uint16]uuid.UUID, error) {
	pipe := n.rdb.Pipeline()
	cmds := make(map[uint16]*redis.Cmd, len(last))
	for p := range last {
		seq := strconv.FormatUint(next[p]-1, 10)
		cmds[p] = pipe.Do(ctx, "EPSCAN", strconv.Itoa(int(p)), seq, "+", "COUNT", "1")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, convertErr(err)
	}
	out := make(map[uint16]uuid.UUID, len(last))
	for p, cmd := range cmds {
		page, err := scanPage(cmd.Val())
		if err != nil {
			return nil, err
		}
		if len(page.Events) > 0 && page.Events[0].PartitionSequence == next[p]-1 {
			out[p] = page.Events[0].ID
		}
	}
	return out, nil
}

func (cs *clusterSub) moved() {
	cs.moves.Add(1)
	cs.cl.legMoves.Add(1)
}
