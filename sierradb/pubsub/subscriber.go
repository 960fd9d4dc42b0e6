package pubsub

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill/sierradb"
)

// Defaults of [SubscriberConfig].
const (
	DefaultNackDelay    = 10 * time.Millisecond
	DefaultMaxNackDelay = time.Second
	// DefaultCheckpointTimeout bounds each save to the checkpoint store.
	DefaultCheckpointTimeout = 10 * time.Second
)

// A consumer group on a category passes over other streams' events; their
// positions are saved with the next ack, or, without one, after
// skipFlushEvery such events or when the subscription is idle and
// skipFlushInterval has passed since the last time.
const (
	skipFlushEvery    = 1000
	skipFlushInterval = time.Second
)

// Start says where a subscription without a checkpoint begins.
type Start uint8

const (
	// FromBeginning delivers every stored event, then live ones. It is
	// the zero value.
	FromBeginning Start = iota
	// FromLatest delivers only events stored after Subscribe.
	FromLatest
)

// SubscriberConfig configures a [Subscriber].
type SubscriberConfig struct {
	// Client is the SierraDB client to subscribe with. Required. The
	// subscriber never closes it: whoever created it does.
	Client *sierradb.Client

	// Topics maps topics to streams, categories and the all-events topic.
	// Optional: the zero value.
	Topics Topics

	// ConsumerGroup names the group whose position this subscriber keeps
	// in Checkpoints. Empty: no group, every Subscribe starts at Start and
	// nothing is saved (fan-out).
	ConsumerGroup string

	// Checkpoints stores the group's positions. Optional: an in-memory
	// store of this subscriber's own (positions then last as long as the
	// subscriber). Share a [MemoryCheckpoints] between subscribers to
	// resume in-process, or give a durable store to resume across
	// processes. Ignored without a ConsumerGroup.
	Checkpoints CheckpointStore

	// CheckpointEvery saves the group's position after every n acks,
	// instead of after each one. Whatever is not saved yet is saved when
	// the subscription ends. Default: 1.
	CheckpointEvery int

	// CheckpointTimeout bounds each save. Default: DefaultCheckpointTimeout.
	CheckpointTimeout time.Duration

	// Start is where a subscription begins when there is no checkpoint:
	// always without a group, and for a group's first subscription.
	// Default: FromBeginning.
	Start Start

	// NackDelay is the wait before a nacked message is delivered again. It
	// doubles with each further Nack of the same message, up to
	// MaxNackDelay. Defaults: DefaultNackDelay and DefaultMaxNackDelay.
	NackDelay    time.Duration
	MaxNackDelay time.Duration

	// MaxRedeliveries limits how often one message is delivered again
	// after a Nack. When a message is nacked once more,
	// OnRedeliveriesExhausted is called and, if it returns nil, the
	// message is acknowledged and delivery moves on. 0 means no limit.
	MaxRedeliveries int

	// OnRedeliveriesExhausted receives a message that reached
	// MaxRedeliveries, for example to publish it to a poison topic. If it
	// returns an error, the error is logged and the message is delivered
	// again (and the hook called again at its next Nack). Optional: the
	// message is logged at error level and dropped (acknowledged).
	OnRedeliveriesExhausted func(ctx context.Context, topic string, msg *message.Message) error

	// Window is how many events the server may send ahead of the
	// acknowledgements, for category and all-events topics and for a
	// group resuming a stream topic (a stream subscription from the start
	// or the latest event uses the client's default window).
	// Default: sierradb.DefaultWindow.
	Window int

	// Logger receives errors and debug output. Default: watermill.NopLogger.
	Logger watermill.LoggerAdapter

	// Upcast rewrites each stored event into its current shape before it
	// becomes a message (also a redelivered one, and the one given to
	// OnRedeliveriesExhausted), so that consumers see what the entity
	// type's current code would decode: give an aggregate.Type's
	// UpcastStored method, or several chained with [ChainUpcasts]. An
	// event the hook cannot rewrite is delivered as stored, with the error
	// under [MetadataUpcastError]. Optional: events are delivered as
	// stored.
	Upcast UpcastFunc
}

func (c *SubscriberConfig) setDefaults() {
	if c.Checkpoints == nil {
		c.Checkpoints = NewMemoryCheckpoints()
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = 1
	}
	if c.CheckpointTimeout == 0 {
		c.CheckpointTimeout = DefaultCheckpointTimeout
	}
	if c.NackDelay == 0 {
		c.NackDelay = DefaultNackDelay
	}
	if c.MaxNackDelay == 0 {
		c.MaxNackDelay = max(DefaultMaxNackDelay, c.NackDelay)
	}
	if c.Window == 0 {
		c.Window = sierradb.DefaultWindow
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
}

// Validate reports every problem with the configuration.
func (c SubscriberConfig) Validate() error {
	var errs []error
	if c.Client == nil {
		errs = append(errs, errors.New("sierradb/pubsub: SubscriberConfig.Client is required"))
	}
	if c.CheckpointEvery < 0 {
		errs = append(errs, errors.New("sierradb/pubsub: SubscriberConfig.CheckpointEvery must not be negative"))
	}
	if c.CheckpointTimeout < 0 {
		errs = append(errs, errors.New("sierradb/pubsub: SubscriberConfig.CheckpointTimeout must not be negative"))
	}
	if c.Start != FromBeginning && c.Start != FromLatest {
		errs = append(errs, fmt.Errorf("sierradb/pubsub: SubscriberConfig.Start %d is unknown", c.Start))
	}
	if c.NackDelay < 0 || c.MaxNackDelay < 0 {
		errs = append(errs, errors.New("sierradb/pubsub: SubscriberConfig.NackDelay and MaxNackDelay must not be negative"))
	}
	if c.MaxNackDelay > 0 && c.NackDelay > c.MaxNackDelay {
		errs = append(errs, errors.New("sierradb/pubsub: SubscriberConfig.NackDelay exceeds MaxNackDelay"))
	}
	if c.MaxRedeliveries < 0 {
		errs = append(errs, errors.New("sierradb/pubsub: SubscriberConfig.MaxRedeliveries must not be negative"))
	}
	if c.Window < 0 {
		errs = append(errs, errors.New("sierradb/pubsub: SubscriberConfig.Window must not be negative"))
	}
	return errors.Join(errs...)
}

// Subscriber delivers SierraDB events as Watermill messages. It is safe for
// concurrent use; each Subscribe call is an independent subscription.
type Subscriber struct {
	cfg SubscriberConfig

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	// closeCtx is cancelled by Close, to cut a Subscribe's set-up short.
	closeCtx    context.Context
	cancelClose context.CancelFunc
	wg          sync.WaitGroup
}

// NewSubscriber returns a subscriber reading through cfg.Client.
func NewSubscriber(cfg SubscriberConfig) (*Subscriber, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	closeCtx, cancel := context.WithCancel(context.Background())
	return &Subscriber{cfg: cfg, closing: make(chan struct{}), closeCtx: closeCtx, cancelClose: cancel}, nil
}

// Subscribe delivers the events of topic, a stream, a category
// ("<category>-*") or every event (the all-events topic, "*" by default),
// one message at a time: the next message comes after the previous one is
// acked. Order is the stream's for a stream topic, and per partition
// otherwise.
//
// ctx bounds the set-up and the subscription: when it is done, or when the
// subscriber is closed, the output channel is closed. Messages carry a
// context derived from ctx that is cancelled on Ack, on Nack and when the
// subscription ends.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	t, err := s.cfg.Topics.parse(topic)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.wg.Add(1)
	s.mu.Unlock()

	run := &run{s: s, topic: topic, target: t, out: make(chan *message.Message)}
	if s.cfg.ConsumerGroup != "" {
		run.cp = &checkpointer{s: s, topic: topic, dirty: make(map[uint16]uint64)}
	}
	openCtx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.closeCtx, cancel)
	sub, err := run.open(openCtx)
	stop()
	cancel()
	if err != nil {
		s.wg.Done()
		return nil, fmt.Errorf("sierradb/pubsub: subscribe to %q: %w", topic, err)
	}
	run.sub = sub
	go run.loop(ctx)
	return run.out, nil
}

// Close ends every subscription, closing their output channels, saves the
// positions of acked messages and waits until every goroutine it started
// has exited. It does not close the client. It is idempotent.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
		s.cancelClose()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// run is one Subscribe call.
type run struct {
	s      *Subscriber
	topic  string
	target target
	sub    *sierradb.Subscription
	out    chan *message.Message
	cp     *checkpointer // nil without a consumer group
	// filter is set when the server-side subscription may deliver events
	// of other streams.
	filter bool
}

// open starts the SierraDB subscription: for a stream, a stream
// subscription (or, to resume a group, a partition subscription from the
// checkpoint); for a category or all events, a subscription to every
// partition.
func (r *run) open(ctx context.Context) (*sierradb.Subscription, error) {
	c := r.s.cfg.Client
	var from map[uint16]uint64
	if r.cp != nil {
		loadCtx, cancel := context.WithTimeout(ctx, r.s.cfg.CheckpointTimeout)
		cps, err := r.s.cfg.Checkpoints.Load(loadCtx, r.s.cfg.ConsumerGroup, r.topic)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("loading checkpoint of group %q: %w", r.s.cfg.ConsumerGroup, err)
		}
		from = make(map[uint16]uint64, len(cps))
		for p, seq := range cps {
			from[p] = seq + 1
		}
	}
	start, def := sierradb.StartBeginning, sierradb.StartBeginning
	if r.s.cfg.Start == FromLatest {
		start, def = sierradb.StartLatest, sierradb.StartLatest
	}
	if r.target.kind == topicStream {
		p, err := c.PartitionOf(ctx, r.target.key)
		if err != nil {
			return nil, err
		}
		next, ok := from[p]
		if !ok {
			return c.SubscribeStream(ctx, r.target.stream, start)
		}
		r.filter = true
		return c.SubscribePartitions(ctx, sierradb.PartitionSubscription{
			Partitions: []uint16{p}, From: map[uint16]uint64{p: next}, Window: r.s.cfg.Window,
		})
	}
	r.filter = r.target.kind == topicCategory
	return c.SubscribePartitions(ctx, sierradb.PartitionSubscription{From: from, Default: def, Window: r.s.cfg.Window})
}

// readAhead is how many converted messages wait for the consumer: the next
// message is decoded while the consumer handles the current one.
const readAhead = 32

// item is an event converted by the read-ahead goroutine. skips holds the
// positions of other streams' events that came before it (consumer groups
// only); an item with no msg carries only skips.
type item struct {
	ev    sierradb.Event
	msg   *message.Message
	skips map[uint16]uint64
}

// loop delivers the subscription's events until it ends. A second
// goroutine (read) reads ahead: it filters and converts events, so that
// decoding overlaps with the consumer's work.
func (r *run) loop(ctx context.Context) {
	defer r.s.wg.Done()
	defer close(r.out)
	log := r.s.cfg.Logger.With(watermill.LogFields{"topic": r.topic, "consumer_group": r.s.cfg.ConsumerGroup})
	items := make(chan item, readAhead)
	stop := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		r.read(ctx, items, stop)
	}()
	defer func() {
		close(stop)
		r.sub.Close()
		<-readDone
		if r.cp != nil {
			r.cp.flush(ctx)
		}
	}()
	for {
		select {
		case it, ok := <-items:
			if !ok {
				if err := r.sub.Err(); err != nil {
					log.Error("sierradb/pubsub: subscription ended", err, nil)
				}
				return
			}
			// Everything before it was acked: the positions of the
			// other streams' events in between may be saved.
			r.cp.skip(ctx, &it)
			if it.msg != nil && !r.deliver(ctx, &it.ev, it.msg, log) {
				return
			}
		case <-r.s.closing:
			return
		case <-ctx.Done():
			return
		}
	}
}

// read filters and converts events into items until the subscription
// ends or stop is closed.
func (r *run) read(ctx context.Context, items chan<- item, stop <-chan struct{}) {
	defer close(items)
	events := r.sub.Events()
	var skips map[uint16]uint64
	skipped := 0
	lastFlush := time.Now()
	send := func(it item) bool {
		select {
		case items <- it:
			return true
		case <-stop:
		case <-r.s.closing:
		case <-ctx.Done():
		}
		return false
	}
	flushSkips := func() bool {
		ok := send(item{skips: skips})
		skips, skipped, lastFlush = nil, 0, time.Now()
		return ok
	}
	for {
		var ev sierradb.Event
		var ok bool
		select {
		case ev, ok = <-events:
		default:
			// Idle: pass on the skipped positions, at most once per
			// skipFlushInterval.
			var timer *time.Timer
			var flush <-chan time.Time
			if skipped > 0 {
				timer = time.NewTimer(skipFlushInterval - time.Since(lastFlush))
				flush = timer.C
			}
			flushNow := false
			select {
			case ev, ok = <-events:
			case <-flush:
				flushNow = true
			case <-stop:
				return
			}
			if timer != nil {
				timer.Stop()
			}
			if flushNow {
				if !flushSkips() {
					return
				}
				continue
			}
		}
		if !ok {
			return
		}
		if r.filter && !r.target.match(&ev) {
			r.sub.Ack(ev)
			if r.cp == nil {
				continue
			}
			if skips == nil {
				skips = make(map[uint16]uint64)
			}
			skips[ev.PartitionID] = ev.PartitionSequence
			if skipped++; skipped >= skipFlushEvery && !flushSkips() {
				return
			}
			continue
		}
		if !send(item{ev: ev, msg: r.s.message(&ev), skips: skips}) {
			return
		}
		skips, skipped = nil, 0
	}
}

// deliver hands one event to the consumer until it is acked, and reports
// whether the subscription goes on.
func (r *run) deliver(ctx context.Context, ev *sierradb.Event, msg *message.Message, log watermill.LoggerAdapter) bool {
	nacks := 0
	for {
		mctx, cancel := context.WithCancel(ctx)
		msg.SetContext(mctx)
		select {
		case r.out <- msg:
		case <-r.s.closing:
			cancel()
			return false
		case <-ctx.Done():
			cancel()
			return false
		}
		select {
		case <-msg.Acked():
			cancel()
			r.acked(ctx, ev)
			return true
		case <-msg.Nacked():
			cancel()
		case <-r.s.closing:
			cancel()
			r.ackedLate(ctx, msg, ev)
			return false
		case <-ctx.Done():
			cancel()
			r.ackedLate(ctx, msg, ev)
			return false
		}

		nacks++
		if limit := r.s.cfg.MaxRedeliveries; limit > 0 && nacks > limit {
			if r.exhausted(ctx, ev, nacks-1, log) {
				r.acked(ctx, ev)
				return true
			}
		}
		delay := r.s.cfg.NackDelay
		for i := 1; i < nacks && delay < r.s.cfg.MaxNackDelay; i++ {
			delay *= 2
		}
		delay = min(delay, r.s.cfg.MaxNackDelay)
		if delay > 0 {
			timer := time.NewTimer(delay)
			select {
			case <-timer.C:
			case <-r.s.closing:
				timer.Stop()
				return false
			case <-ctx.Done():
				timer.Stop()
				return false
			}
		}
		// Built again from the event: the consumer may have changed the
		// message it nacked.
		msg = r.s.message(ev)
		msg.Metadata[MetadataRedeliveries] = strconv.Itoa(nacks)
	}
}

// ackedLate records an Ack that raced with the end of the subscription, so
// that a message acked before Close is not delivered again.
func (r *run) ackedLate(ctx context.Context, msg *message.Message, ev *sierradb.Event) {
	select {
	case <-msg.Acked():
		r.acked(ctx, ev)
	default:
	}
}

func (r *run) acked(ctx context.Context, ev *sierradb.Event) {
	r.sub.Ack(*ev)
	r.cp.ack(ctx, ev)
}

// exhausted hands a message that reached MaxRedeliveries to the hook and
// reports whether to acknowledge it.
func (r *run) exhausted(ctx context.Context, ev *sierradb.Event, redeliveries int, log watermill.LoggerAdapter) bool {
	msg := r.s.message(ev)
	if redeliveries > 0 {
		msg.Metadata[MetadataRedeliveries] = strconv.Itoa(redeliveries)
	}
	fields := watermill.LogFields{"message_uuid": msg.UUID, "event_id": msg.Metadata[MetadataEventID],
		"stream_id": ev.StreamID, "stream_version": ev.StreamVersion, "redeliveries": redeliveries}
	hook := r.s.cfg.OnRedeliveriesExhausted
	if hook == nil {
		log.Error("sierradb/pubsub: message nacked after its last redelivery; dropping it", nil, fields)
		return true
	}
	if err := hook(ctx, r.topic, msg); err != nil {
		log.Error("sierradb/pubsub: OnRedeliveriesExhausted failed; delivering the message again", err, fields)
		return false
	}
	return true
}

// checkpointer keeps a consumer group's positions for one subscription.
// It is used only by the subscription's goroutine.
type checkpointer struct {
	s     *Subscriber
	topic string
	dirty map[uint16]uint64
	acks  int
}

// ack records a processed event and saves the positions every
// CheckpointEvery acks.
func (c *checkpointer) ack(ctx context.Context, ev *sierradb.Event) {
	if c == nil {
		return
	}
	c.dirty[ev.PartitionID] = ev.PartitionSequence
	c.acks++
	if c.acks >= c.s.cfg.CheckpointEvery {
		c.save(ctx)
	}
}

// skip records the positions of other streams' events that a category
// passed over. Every event delivered before them has been acked (delivery
// is one at a time, in order), so the positions may move past them. They
// are saved with the next ack, or now if no message comes with them.
func (c *checkpointer) skip(ctx context.Context, it *item) {
	if c == nil || len(it.skips) == 0 {
		return
	}
	for p, seq := range it.skips {
		c.dirty[p] = seq
	}
	if it.msg == nil {
		c.save(ctx)
	}
}

// flush saves what is left when the subscription ends.
func (c *checkpointer) flush(ctx context.Context) { c.save(ctx) }

// save writes the positions not saved yet. It does not use the
// subscription's cancellation (which may be what ends the subscription),
// only CheckpointTimeout.
func (c *checkpointer) save(ctx context.Context) {
	if len(c.dirty) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.s.cfg.CheckpointTimeout)
	defer cancel()
	group := c.s.cfg.ConsumerGroup
	for p, seq := range c.dirty {
		if err := c.s.cfg.Checkpoints.Save(ctx, group, c.topic, p, seq); err != nil {
			c.s.cfg.Logger.Error("sierradb/pubsub: saving checkpoint failed; will retry", err, watermill.LogFields{
				"topic": c.topic, "consumer_group": group, "partition": p, "sequence": seq,
			})
			return
		}
		delete(c.dirty, p)
	}
	c.acks = 0
}
