package pubsub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill/sierradb"
)

// Defaults of [SubscriberConfig].
const (
	DefaultNackDelay    = 10 * time.Millisecond
	DefaultMaxNackDelay = time.Second
	// DefaultCheckpointTimeout bounds each save to the checkpoint store.
	DefaultCheckpointTimeout = 10 * time.Second
	// DefaultConfirmWait bounds the wait for a partition's head to reach
	// a group's position.
	DefaultConfirmWait = 5 * time.Second
)

// A consumer group on a category passes over other streams' events; their
// positions are saved with the next ack, or, without one, after
// skipFlushEvery such events or when the subscription is idle and
// skipFlushInterval has passed since the last time.
const (
	skipFlushEvery    = 1000
	skipFlushInterval = time.Second
)

// SubscriberConfig configures a [Subscriber].
type SubscriberConfig struct {
	// Client is the SierraDB client to subscribe with. Required. The
	// subscriber never closes it: whoever created it does (tested:
	// TestSubscribeLifecycle). A cluster client
	// (sierradb.Config.Cluster) covers every node's partitions.
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

	// ConfirmWait is how long a group position ahead of its partition's
	// head (EPSEQ) waits for the head to catch up before the group is
	// reported diverged ([DivergedError]). SierraDB 0.3.1 delivers a
	// multi-event append to subscribers once its first event is
	// confirmed, while the head counts confirmed events one at a time, so
	// a group that has just processed such events can be ahead of the
	// head for a moment (a disk write on the server, longer on a loaded
	// machine). Default: DefaultConfirmWait.
	ConfirmWait time.Duration

	// Start is where a subscription begins when there is no checkpoint:
	// always without a group, and for a group's first subscription:
	// sierradb.StartBeginning (the zero value: every stored event, then
	// live ones), sierradb.StartLatest (only events stored after
	// Subscribe), or sierradb.StartAt(n) (a stream topic from version n; a
	// category or the all-events topic from sequence n of every
	// partition). Default: sierradb.StartBeginning.
	Start sierradb.Start

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

	// Logger receives errors and debug output. Default: discard.
	Logger *slog.Logger

	// Upcast rewrites each stored event into its current shape before it
	// becomes a message (also a redelivered one, and the one given to
	// OnRedeliveriesExhausted), so that consumers see what the entity
	// type's current code would decode: give an aggregate.Type's
	// UpcastStored method, or several chained with [ChainUpcasts]. An
	// event the hook cannot rewrite is delivered as stored, with the error
	// under [esmill.MetaUpcastError]. Optional: events are delivered as
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
	if c.ConfirmWait == 0 {
		c.ConfirmWait = DefaultConfirmWait
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
		c.Logger = slog.New(slog.DiscardHandler)
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
	if c.ConfirmWait < 0 {
		errs = append(errs, errors.New("sierradb/pubsub: SubscriberConfig.ConfirmWait must not be negative"))
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

	// skipFlushInterval is skipFlushInterval; tests lengthen it to tell
	// the count-based flush from the idle one (export_test.go).
	skipFlushInterval time.Duration
}

// NewSubscriber returns a subscriber reading through cfg.Client.
func NewSubscriber(cfg SubscriberConfig) (*Subscriber, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	closeCtx, cancel := context.WithCancel(context.Background())
	return &Subscriber{cfg: cfg, closing: make(chan struct{}), closeCtx: closeCtx, cancelClose: cancel,
		skipFlushInterval: skipFlushInterval}, nil
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
	// serverID is the server's identity when a group subscribed.
	serverID string
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
		last := make(map[uint16]int64, len(cps))
		for p, seq := range cps {
			from[p] = seq + 1
			last[p] = int64(seq)
		}
		// The positions must belong to this server's history.
		if err := r.checkServer(ctx); err != nil {
			return nil, err
		}
		div, err := r.compare(ctx, last)
		if err != nil {
			return nil, err
		}
		if div != nil {
			return nil, div
		}
	}
	var resume func(context.Context, map[uint16]uint64) error
	if r.cp != nil {
		resume = r.resume
	}
	start := r.s.cfg.Start
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
			Partitions: []uint16{p}, From: map[uint16]uint64{p: next}, Window: r.s.cfg.Window, Resume: resume,
		})
	}
	r.filter = r.target.kind == topicCategory
	return c.SubscribePartitions(ctx, sierradb.PartitionSubscription{From: from, Default: start, Window: r.s.cfg.Window, Resume: resume})
}
