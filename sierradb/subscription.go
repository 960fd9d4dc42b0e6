package sierradb

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
)

// DefaultWindow is the number of unacknowledged events a subscription lets
// the server send ahead, the server's own default.
const DefaultWindow = 1000

// Start says where a subscription begins.
type Start struct {
	latest bool
	at     uint64
}

var (
	// StartBeginning delivers from the first event. It is the zero value.
	StartBeginning = Start{}
	// StartLatest delivers only events stored after the subscription
	// starts. The position is fixed when the subscription is made, so a
	// reconnection does not skip what was stored meanwhile.
	StartLatest = Start{latest: true}
)

// StartAt delivers from partition sequence (or, for a stream, version) n on.
func StartAt(n uint64) Start { return Start{at: n} }

// PartitionSubscription says which partitions to follow and from where.
type PartitionSubscription struct {
	// Partitions lists the partitions to follow. Default: all of the
	// server's partitions.
	Partitions []uint16
	// From gives, per partition, the first sequence to deliver (typically
	// a checkpoint plus one). It overrides Default.
	From map[uint16]uint64
	// Default is where partitions without an entry in From begin.
	// Default: StartBeginning.
	Default Start
	// Window is the most events the server sends ahead of the
	// acknowledgements. Default: DefaultWindow.
	Window int
	// Resume, if set, is called after a lost connection, before each
	// attempt to subscribe again, with the sequence each partition would
	// resume from (one past the last delivered event, or the start
	// position). If it returns an error, the subscription ends with that
	// error ([Subscription.Err]) instead of resuming. A reader that keeps
	// checkpoints uses it to check that the server still holds what it
	// has read (see [Client.ServerID]); it retries its own transient
	// failures until ctx, cancelled by Close, is done.
	Resume func(ctx context.Context, next map[uint16]uint64) error
}

// subSpec is the part of a subscription that differs between partition
// and stream subscriptions.
type subSpec struct {
	partitions []uint16
	all        bool
	next       map[uint16]uint64
	window     int
	filter     func(*Event) bool
	resume     func(ctx context.Context, next map[uint16]uint64) error
	what       string
}

// SubscribePartitions follows partitions: it delivers their events in
// sequence order per partition (there is no order across partitions), first
// history from the given positions, then live events, with no gap and no
// duplicate between the two. ctx bounds only the set-up; the subscription
// runs until [Subscription.Close] or until the client is closed.
func (c *Client) SubscribePartitions(ctx context.Context, req PartitionSubscription) (*Subscription, error) {
	count, err := c.PartitionCount(ctx)
	if err != nil {
		return nil, err
	}
	spec := subSpec{window: req.Window, next: make(map[uint16]uint64), resume: req.Resume, what: "partitions"}
	if spec.window == 0 {
		spec.window = DefaultWindow
	}
	if spec.window < 0 {
		return nil, fmt.Errorf("sierradb: negative window: %w", ErrInvalidArgument)
	}
	if len(req.Partitions) == 0 {
		spec.all = true
		for p := range count {
			spec.partitions = append(spec.partitions, p)
		}
	} else {
		spec.partitions = slices.Clone(req.Partitions)
		slices.Sort(spec.partitions)
		spec.partitions = slices.Compact(spec.partitions)
		for _, p := range spec.partitions {
			if p >= count {
				return nil, fmt.Errorf("sierradb: partition %d of %d: %w", p, count, ErrInvalidArgument)
			}
		}
	}
	var latest []uint16
	for _, p := range spec.partitions {
		if n, ok := req.From[p]; ok {
			spec.next[p] = n
		} else if req.Default.latest {
			latest = append(latest, p)
		} else {
			spec.next[p] = req.Default.at
		}
	}
	if len(latest) > 0 {
		seqs, err := c.PartitionSequences(ctx, latest)
		if err != nil {
			return nil, err
		}
		for p, s := range seqs {
			spec.next[p] = uint64(s + 1)
		}
	}
	return c.subscribe(ctx, spec)
}

// SubscribeStream follows one stream: it delivers its events in version
// order from the given version (or from the latest), then live events.
//
// It runs on a partition subscription filtered to the stream, because
// SierraDB 0.3.1's ESUB ignores FROM (see the conformance suite). The
// partition key defaults to [StreamPartitionKey] of the stream; see
// [WithPartitionKey].
func (c *Client) SubscribeStream(ctx context.Context, streamID string, from Start, opts ...SubscribeOption) (*Subscription, error) {
	if err := ValidateStreamID(streamID); err != nil {
		return nil, err
	}
	o := subscribeOptions(opts)
	key := StreamPartitionKey(streamID)
	if o.partitionKey != nil {
		key = *o.partitionKey
	}
	partition, err := c.PartitionOf(ctx, key)
	if err != nil {
		return nil, err
	}
	// Read the partition head before looking for the start event: an
	// event stored after this read has a higher sequence, so starting
	// past the head cannot skip it.
	head, err := c.PartitionSequence(ctx, partition)
	if err != nil {
		return nil, err
	}
	start := uint64(head + 1)
	minVersion := uint64(0)
	if !from.latest {
		minVersion = from.at
		page, err := c.Scan(ctx, streamID, from.at, End, WithPartitionKey(key), WithCount(1))
		if err != nil {
			return nil, err
		}
		if len(page.Events) > 0 {
			start = page.Events[0].PartitionSequence
		}
	} else {
		v, err := c.StreamVersion(ctx, streamID, WithPartitionKey(key))
		if err != nil {
			return nil, err
		}
		minVersion = uint64(v + 1)
	}
	spec := subSpec{
		partitions: []uint16{partition},
		next:       map[uint16]uint64{partition: start},
		window:     DefaultWindow,
		what:       "stream " + strconv.Quote(streamID),
		filter: func(ev *Event) bool {
			return ev.StreamID == streamID && ev.PartitionKey == key && ev.StreamVersion >= minVersion
		},
	}
	return c.subscribe(ctx, spec)
}

// Subscription delivers events from a SierraDB subscription. Read them from
// [Subscription.Events] and acknowledge each processed one with
// [Subscription.Ack]. It is safe for concurrent use.
type Subscription struct {
	c      *Client
	spec   subSpec
	events chan Event
	done   chan struct{}

	closeOnce sync.Once
	closing   chan struct{}
	// ctx is cancelled by Close: it ends a reconnection's wait and dial.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	conn   net.Conn
	err    error
	acks   ackState
	notify chan struct{}

	// addr is the server this subscription connects to; leg marks a
	// subscription on one node of a cluster, owned by a cluster
	// subscription, which ends instead of reconnecting.
	addr string
	leg  bool
	// cs runs a subscription on a cluster: its events come from one leg
	// per coordinating node.
	cs *clusterSub

	// The live check (Config.LiveCheckInterval): heads reads the
	// partition heads of the server at addr; nextMu guards spec.next,
	// which handlePush writes, for the check's reads; lastPush (unix
	// nanoseconds) and recv (cursor) are the latest push received;
	// heldGen is the connection generation the check closed; owner is
	// the cluster subscription a leg counts its resubscriptions in.
	heads    func(ctx context.Context, partitions []uint16) (map[uint16]int64, error)
	nextMu   sync.Mutex
	lastPush atomic.Int64
	recv     atomic.Int64
	heldGen  atomic.Uint32
	resubs   atomic.Int64
	owner    *Subscription
}

// LiveResubscribes counts how often the subscription (each leg of a
// cluster subscription) resubscribed because its server held back events
// it had confirmed (see Config.LiveCheckInterval).
func (s *Subscription) LiveResubscribes() int { return int(s.resubs.Load()) }

// ackState tracks acknowledgements of one server subscription (one
// connection generation). Cursors are the server's per-subscription
// counters; mark is the highest cursor below which everything is acked.
type ackState struct {
	gen     uint32
	mark    int64
	sent    int64
	pending map[uint64]struct{}
}

// eventTag links a delivered event to the connection generation and cursor
// it arrived with.
type eventTag struct {
	sub    *Subscription
	gen    uint32
	cursor uint64
}

func newSubscription(c *Client, spec subSpec, addr string) *Subscription {
	s := &Subscription{
		c:       c,
		spec:    spec,
		addr:    addr,
		events:  make(chan Event, spec.window),
		done:    make(chan struct{}),
		closing: make(chan struct{}),
		notify:  make(chan struct{}, 1),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

func (c *Client) subscribe(ctx context.Context, spec subSpec) (*Subscription, error) {
	if c.cl != nil {
		return c.subscribeCluster(ctx, spec)
	}
	s := newSubscription(c, spec, c.cfg.Addr)
	s.heads = func(ctx context.Context, ps []uint16) (map[uint16]int64, error) {
		return pipelineSequences(ctx, c.rdb, ps)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.subs[s] = struct{}{}
	c.mu.Unlock()

	conn, r, subID, err := s.connect(ctx, 1)
	if err != nil {
		s.cancel()
		c.forget(s)
		return nil, err
	}
	go s.run(conn, r, subID)
	return s, nil
}

func (c *Client) forget(s *Subscription) {
	c.mu.Lock()
	delete(c.subs, s)
	c.mu.Unlock()
}

// Events returns the channel of delivered events. It is closed when the
// subscription ends; [Subscription.Err] then says why.
func (s *Subscription) Events() <-chan Event { return s.events }

// Done is closed when the subscription has stopped and released everything.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err returns the error that ended the subscription: nil while it runs and
// after a Close, [ErrClosed] if the client was closed, otherwise the failure.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close stops the subscription and waits until its goroutines have exited.
// Events still buffered are dropped; they were not acknowledged. It is
// idempotent.
func (s *Subscription) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.cancel()
		s.mu.Lock()
		if s.conn != nil {
			s.conn.Close()
		}
		s.mu.Unlock()
	})
	<-s.done
	return nil
}

// Ack acknowledges a processed event. Acknowledgements may come in any
// order; the server is told, in batches, the highest point up to which
// everything is acknowledged, which moves its window on. An event from
// before a reconnection needs no acknowledgement and is ignored.
func (s *Subscription) Ack(ev Event) {
	if ev.tag.sub != nil {
		ev.tag.sub.ack(ev.tag)
	}
}

func (s *Subscription) ack(tag eventTag) {
	s.mu.Lock()
	a := &s.acks
	if tag.gen != a.gen || int64(tag.cursor) <= a.mark {
		s.mu.Unlock()
		return
	}
	advanced := false
	if int64(tag.cursor) == a.mark+1 {
		a.mark++
		advanced = true
		for {
			if _, ok := a.pending[uint64(a.mark+1)]; !ok {
				break
			}
			delete(a.pending, uint64(a.mark+1))
			a.mark++
		}
	} else {
		a.pending[tag.cursor] = struct{}{}
	}
	s.mu.Unlock()
	if advanced {
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

func (s *Subscription) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}
