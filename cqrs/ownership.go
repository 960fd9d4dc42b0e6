package cqrs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/internal/backoff"
	"github.com/esmill/esmill/lease"
)

// Ownership makes the instances of a command router that share a group
// divide the command partitions among themselves (package lease): each
// partition's topics are consumed by at most one live instance at any
// moment, and by exactly one once the group is stable. See
// [RouterConfig.Ownership].
type Ownership struct {
	// Store keeps the group's membership and leases, shared by every
	// instance (lease.NewRedisStore on the Redis the commands travel
	// through, say). Required.
	Store lease.Store
	// Group names the group (see lease.ValidateName). Required. Every
	// router of the group must handle the same entity types with the same
	// Partitions.
	Group string
	// Instance names this instance in the group. Default: host name,
	// process id and a random suffix (lease.NewInstanceName).
	Instance string
	// TTL, RenewInterval and StopMargin are the lease timing (see
	// lease.Config): a partition moves within about two renew intervals
	// on a join or a graceful leave, and within TTL plus a renew interval
	// after a crash. Defaults: 10s, TTL/5, TTL/5.
	TTL, RenewInterval, StopMargin time.Duration
}

// Validate reports every problem with the configuration.
func (o Ownership) Validate() error {
	var errs []error
	if o.Store == nil {
		errs = append(errs, errors.New("cqrs: Ownership.Store is required (lease.NewRedisStore, for one)"))
	}
	if err := lease.ValidateName("group", o.Group); err != nil {
		errs = append(errs, fmt.Errorf("cqrs: Ownership.Group: %w", err))
	}
	return errors.Join(errs...)
}

// ErrNotOwner is matched by the error of a command message that arrived
// for a partition this router no longer holds. It is transient: the
// message is returned to the transport, which delivers it to the new
// owner.
var ErrNotOwner = errors.New("cqrs: partition no longer held")

// hold is one unbroken holding of a partition: from Assigned to Revoked.
type hold struct {
	g         *gate
	partition int
	token     uint64
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup // its forwarders
}

func (h *hold) valid() bool { return h.g.member().Valid(h.partition, h.token) }

// fence is the hold as the executor's fence.
func (h *hold) fence() aggregate.Fence {
	return aggregate.Fence{Scope: h.g.own.Group + "/" + strconv.Itoa(h.partition), Token: h.token, Valid: h.valid}
}

type holdKey struct{}

// holdOf returns the hold a message was delivered under, if any.
func holdOf(ctx context.Context) *hold {
	h, _ := ctx.Value(holdKey{}).(*hold)
	return h
}

// gateTopic is one command topic as the Watermill handler sees it: a
// channel that lives as long as the handler, fed only while the
// partition is held.
type gateTopic struct {
	name      string
	partition int
	out       chan *message.Message
	done      chan struct{} // closed when the handler's subscription ends
	closed    bool          // guarded by gate.mu
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// gate is the Subscriber that AddHandlers gives the Watermill router when
// the router has an Ownership: it subscribes to a partition's topics on
// the inner subscriber only while the lease member holds the partition,
// hands one message at a time to the handler, and stops (waiting for the
// message in flight) when the partition is revoked.
type gate struct {
	r     *CommandRouter
	inner message.Subscriber
	own   Ownership
	log   *slog.Logger

	base context.Context
	stop context.CancelFunc
	// ready is closed once the lease member is known (holds check their
	// validity with it).
	ready chan struct{}

	mu       sync.Mutex
	topics   map[string]*gateTopic
	byPart   map[int][]*gateTopic
	holds    map[int]*hold
	expected int
	m        *lease.Member
	closed   bool
	// closeDone is closed once Close has finished, so that every caller
	// of Close returns only then.
	closeDone chan struct{}
	err       error
	wg        sync.WaitGroup // forwarders, drains, the member watcher
}

func newGate(r *CommandRouter, inner message.Subscriber) *gate {
	base, stop := context.WithCancel(context.Background())
	return &gate{
		r: r, inner: inner, own: *r.cfg.Ownership, log: r.cfg.Logger,
		base: base, stop: stop, ready: make(chan struct{}), closeDone: make(chan struct{}),
		topics: make(map[string]*gateTopic), byPart: make(map[int][]*gateTopic), holds: make(map[int]*hold),
		expected: len(r.Topics()),
	}
}

func (g *gate) member() *lease.Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.m
}

// Subscribe implements message.Subscriber for the Watermill router. Once
// every command topic of the router is subscribed, the gate joins the
// lease group.
func (g *gate) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	p, ok := g.r.partitionOfTopic[topic]
	if !ok {
		return nil, fmt.Errorf("cqrs: %q is not a command topic of this router", topic)
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil, ErrRouterClosed
	}
	if g.topics[topic] != nil {
		g.mu.Unlock()
		return nil, fmt.Errorf("cqrs: topic %q subscribed twice: call AddHandlers once per router", topic)
	}
	gt := &gateTopic{name: topic, partition: p, out: make(chan *message.Message), done: make(chan struct{})}
	g.topics[topic] = gt
	g.byPart[p] = append(g.byPart[p], gt)
	h := g.holds[p]
	join := len(g.topics) == g.expected && g.m == nil
	g.mu.Unlock()
	if h != nil {
		g.forward(h, gt)
	}
	context.AfterFunc(ctx, func() { g.closeTopic(gt) })
	if join {
		if err := g.join(); err != nil {
			return nil, err
		}
	}
	return gt.out, nil
}

// join joins the lease group and watches the member.
func (g *gate) join() error {
	m, err := lease.Join(lease.Config{
		Store: g.own.Store, Group: g.own.Group, Instance: g.own.Instance, Partitions: g.r.cfg.Partitions,
		TTL: g.own.TTL, RenewInterval: g.own.RenewInterval, StopMargin: g.own.StopMargin, Logger: g.log,
	}, g)
	if err != nil {
		return fmt.Errorf("cqrs: join lease group %s: %w", g.own.Group, err)
	}
	g.mu.Lock()
	g.m = m
	g.mu.Unlock()
	close(g.ready)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		select {
		case <-m.Done():
		case <-g.base.Done():
			return
		}
		if err := m.Err(); err != nil {
			// A fatal error (another partition count in the group): stop
			// the handlers, so that the Watermill router ends, and say
			// why.
			g.log.Error("cqrs: the command router stops: its lease member failed", "group", g.own.Group, "error", err)
			g.mu.Lock()
			g.err = err
			topics := g.topicList()
			g.mu.Unlock()
			for _, gt := range topics {
				g.closeTopic(gt)
			}
		}
	}()
	return nil
}

func (g *gate) topicList() []*gateTopic {
	out := make([]*gateTopic, 0, len(g.topics))
	for _, gt := range g.topics {
		out = append(out, gt)
	}
	return out
}

// Assigned implements lease.Handler: subscribe to the partition's topics.
func (g *gate) Assigned(p int, token uint64) {
	g.mu.Lock()
	if g.closed || g.holds[p] != nil {
		g.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(g.base)
	h := &hold{g: g, partition: p, token: token, ctx: ctx, cancel: cancel}
	g.holds[p] = h
	topics := append([]*gateTopic(nil), g.byPart[p]...)
	g.mu.Unlock()
	for _, gt := range topics {
		g.forward(h, gt)
	}
}

// Revoked implements lease.Handler: stop the partition's subscriptions and
// return once no message of it is in flight.
func (g *gate) Revoked(p int) {
	g.mu.Lock()
	h := g.holds[p]
	delete(g.holds, p)
	g.mu.Unlock()
	if h == nil {
		return
	}
	h.cancel()
	h.wg.Wait()
}

// forward starts the forwarder of topic gt under hold h.
func (g *gate) forward(h *hold, gt *gateTopic) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if gt.closed || h.ctx.Err() != nil {
		return
	}
	h.wg.Add(1)
	gt.wg.Add(1)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer gt.wg.Done()
		defer h.wg.Done()
		g.run(h, gt)
	}()
}

var resubscribe = backoff.Policy{Initial: 50 * time.Millisecond, Max: 2 * time.Second, Jitter: 0.2}

// run subscribes to gt's topic on the inner subscriber for as long as h
// holds, subscribing again if the inner subscription ends on its own.
func (g *gate) run(h *hold, gt *gateTopic) {
	select {
	case <-g.ready:
	case <-h.ctx.Done():
		return
	}
	wait := resubscribe.Start()
	for h.ctx.Err() == nil {
		in, err := g.inner.Subscribe(h.ctx, gt.name)
		if err != nil {
			if h.ctx.Err() == nil {
				g.log.Warn("cqrs: subscribe to a held partition failed; retrying", "topic", gt.name, "error", err)
			}
		} else {
			delivered := g.pump(h, gt, in)
			if delivered {
				wait.Reset()
			}
			if h.ctx.Err() == nil {
				select {
				case <-gt.done:
					return
				default:
				}
				g.log.Info("cqrs: the subscription of a held partition ended; subscribing again", "topic", gt.name)
			}
		}
		if wait.Wait(h.ctx) != nil {
			return
		}
	}
}

// pump hands messages from in to the handler until in closes, the hold
// ends or the handler's subscription does, and returns once every message
// it handed over has its verdict, so that a revocation returns only once
// nothing is in flight. It takes the next message as soon as the inner
// subscription gives it: one at a time for a subscriber that waits for
// each ack, side by side for one that does not (redispart with
// MaxInFlight above 1, which orders them by entity). It reports whether
// it delivered anything.
func (g *gate) pump(h *hold, gt *gateTopic, in <-chan *message.Message) (acked bool) {
	defer g.drain(in)
	var delivered atomic.Bool
	var inFlight sync.WaitGroup
	defer func() {
		// Every verdict counts, those that come while pump returns too.
		inFlight.Wait()
		acked = delivered.Load()
	}()
	for {
		var m *message.Message
		var ok bool
		select {
		case m, ok = <-in:
			if !ok {
				return
			}
		case <-h.ctx.Done():
			return
		case <-gt.done:
			return
		}
		if !h.valid() {
			// The lease's local deadline passed before the member renewed
			// it: deliver nothing until the member either renews it under
			// the same token (a renewal that was slow, not lost) or
			// revokes it. The nacked message comes again, first.
			m.Nack()
			if !g.awaitValid(h, gt) {
				return
			}
			continue
		}
		mctx, cancel := context.WithCancel(context.WithValue(m.Context(), holdKey{}, h))
		stop := context.AfterFunc(h.ctx, cancel)
		m.SetContext(mctx)
		select {
		case gt.out <- m:
		case <-h.ctx.Done():
			m.Nack()
		case <-gt.done:
			m.Nack()
		}
		inFlight.Add(1)
		go func() {
			defer inFlight.Done()
			select {
			case <-m.Acked():
				delivered.Store(true)
			case <-m.Nacked():
			}
			stop()
			cancel()
		}()
	}
}

// validPoll is how often a forwarder whose lease ran out checks whether
// the member renewed it.
const validPoll = 10 * time.Millisecond

// awaitValid waits until h is valid again, and reports whether it is; it
// returns false once the hold or the handler's subscription ends.
func (g *gate) awaitValid(h *hold, gt *gateTopic) bool {
	g.log.Debug("cqrs: a held partition's lease ran out before its renewal; waiting for the renewal or the revocation", "topic", gt.name, "partition", h.partition)
	t := time.NewTicker(validPoll)
	defer t.Stop()
	for !h.valid() {
		select {
		case <-h.ctx.Done():
			return false
		case <-gt.done:
			return false
		case <-t.C:
		}
	}
	return true
}

// drain nacks what the inner subscription still delivers until it closes
// (its context is done or about to be).
func (g *gate) drain(in <-chan *message.Message) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for m := range in {
			m.Nack()
		}
	}()
}

// closeTopic ends the handler's channel once no forwarder uses it.
func (g *gate) closeTopic(gt *gateTopic) {
	gt.closeOnce.Do(func() {
		g.mu.Lock()
		gt.closed = true
		close(gt.done)
		g.mu.Unlock()
		gt.wg.Wait()
		close(gt.out)
	})
}

// Close leaves the group (revoking every partition, waiting for the
// messages in flight), ends the handlers' channels and closes the inner
// subscriber. It is idempotent; every call returns once it is done.
func (g *gate) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		<-g.closeDone
		return nil
	}
	g.closed = true
	m := g.m
	g.mu.Unlock()
	defer close(g.closeDone)
	if m != nil {
		m.Close()
	}
	g.mu.Lock()
	topics := g.topicList()
	holds := make([]*hold, 0, len(g.holds))
	for _, h := range g.holds {
		holds = append(holds, h)
	}
	g.mu.Unlock()
	for _, h := range holds {
		h.cancel()
	}
	for _, gt := range topics {
		g.closeTopic(gt)
	}
	g.stop()
	g.wg.Wait()
	return g.inner.Close()
}

// leases returns the partitions held now, for Owned.
func (g *gate) leases() []lease.Lease {
	if m := g.member(); m != nil {
		return m.Leases()
	}
	return nil
}
