package cqrs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/trace"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/internal/backoff"
	"github.com/esmill/esmill/internal/telemetry"
	"github.com/esmill/esmill/lease"
)

// BusConfig configures a [CommandBus].
type BusConfig struct {
	// Publisher sends command messages. Required. The bus does not close
	// it.
	Publisher message.Publisher
	// Partitions, Topic and Namespace must match the routers'. Defaults:
	// DefaultPartitions, DefaultTopic, none. Every command message
	// carries Partitions (esmill.MetaCommandPartitions): a router with
	// another count refuses it, naming both.
	Partitions int
	Topic      func(category string, partition int) string
	Namespace  string
	// Group, when set, names the lease group of the routers this bus
	// sends to (its Store and Group are read; a store that implements
	// lease.GroupReader, as lease.RedisStore does). At the first send,
	// and once a minute after, the bus checks that the group's live
	// routers use its partition count, and fails every send with a
	// *PartitionMismatchError naming both counts when they do not.
	Group *Ownership
	// RetryWindow is how long the bus remembers an Execute that ended
	// without a reply (a timeout, a cancellation), so that calling
	// Execute again with the same command for the same entity retries it
	// under the same command id: it then runs at most once. Keep it
	// below the executor's aggregate.Config.CommandIDRetention. Default:
	// 5m; -1 turns it off (every Execute is then a new command unless it
	// names its id with WithCommandID).
	RetryWindow time.Duration
	// ReplySubscriber receives replies for Execute. Optional: without it
	// Execute fails. The bus does not close it. A subscription that ends
	// on its own (redispart ends one whose ack it could not record) is
	// replaced, with backoff, until Close.
	ReplySubscriber message.Subscriber
	// ReplyTopic is this bus's reply topic. Default:
	// "esmill.replies.<random>", unique per bus (prefixed with the
	// namespace).
	ReplyTopic string
	// Timeout bounds Execute when ctx has no deadline. Default: 30s.
	Timeout time.Duration
	// Logger receives warnings. Default: discard.
	Logger *slog.Logger
	// TracerProvider makes a producer span per command sent ("send
	// <topic>"; for Execute it lasts until the reply) and writes its
	// trace context into the message (esmill.MetaTraceParent), so that
	// the router continues the trace in whatever process it runs.
	// Default: the global provider.
	TracerProvider trace.TracerProvider
}

func (c *BusConfig) setDefaults() {
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Topic == nil {
		c.Topic = DefaultTopic
	}
	if c.ReplyTopic == "" {
		c.ReplyTopic = namespaced(c.Namespace, "esmill.replies."+watermill.NewShortUUID())
	}
	if c.RetryWindow == 0 {
		c.RetryWindow = 5 * time.Minute
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem with the configuration.
func (c BusConfig) Validate() error {
	var errs []error
	if c.Publisher == nil {
		errs = append(errs, errors.New("cqrs: BusConfig.Publisher is required"))
	}
	if c.Partitions < 0 || c.Partitions > 1<<16 {
		errs = append(errs, errors.New("cqrs: Partitions must be 0 (the default) to 65536"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("cqrs: Timeout must not be negative"))
	}
	if c.RetryWindow < -1 {
		errs = append(errs, errors.New("cqrs: RetryWindow must be positive, 0 (the default) or -1 (off)"))
	}
	if c.Group != nil {
		if err := c.Group.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("cqrs: BusConfig.Group: %w", err))
		}
	}
	return errors.Join(errs...)
}

// CommandBus sends commands as messages. It is safe for concurrent use.
type CommandBus struct {
	cfg    BusConfig
	tracer trace.Tracer

	mu      sync.Mutex
	waiters map[string]chan Reply
	closed  bool

	unknown *unknownOutcomes // nil when RetryWindow is -1

	checkMu   sync.Mutex
	checkedAt time.Time
	checkErr  error

	stop context.CancelFunc
	done chan struct{}
}

// NewCommandBus returns a bus. With a ReplySubscriber it subscribes to its
// reply topic at once; Close ends that.
func NewCommandBus(cfg BusConfig) (*CommandBus, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	b := &CommandBus{cfg: cfg, waiters: make(map[string]chan Reply), done: make(chan struct{}), tracer: telemetry.Tracer(cfg.TracerProvider)}
	if cfg.RetryWindow > 0 {
		b.unknown = newUnknownOutcomes(cfg.RetryWindow, time.Now)
	}
	if cfg.ReplySubscriber == nil {
		close(b.done)
		b.stop = func() {}
		return b, nil
	}
	ctx, stop := context.WithCancel(context.Background())
	replies, err := cfg.ReplySubscriber.Subscribe(ctx, cfg.ReplyTopic)
	if err != nil {
		stop()
		return nil, fmt.Errorf("cqrs: subscribe to replies: %w", err)
	}
	b.stop = stop
	go b.receive(ctx, replies)
	return b, nil
}

// resubscribeReplies spaces the bus's subscriptions to its reply topic
// after one ended on its own.
var resubscribeReplies = backoff.Policy{Initial: 50 * time.Millisecond, Max: 2 * time.Second, Jitter: 0.2}

// receive hands replies to their waiters until ctx ends (Close). A
// subscription that ends on its own (redispart ends one whose ack could
// not be recorded, as during a Redis failover) is replaced, so that the
// waiting Execute calls still get their replies.
func (b *CommandBus) receive(ctx context.Context, replies <-chan *message.Message) {
	defer close(b.done)
	wait := resubscribeReplies.Start()
	for {
		if b.deliver(replies) {
			wait.Reset()
		}
		if ctx.Err() != nil {
			return
		}
		b.cfg.Logger.Warn("cqrs: the reply subscription ended; subscribing again", "topic", b.cfg.ReplyTopic)
		for replies = nil; replies == nil; {
			if wait.Wait(ctx) != nil {
				return
			}
			r, err := b.cfg.ReplySubscriber.Subscribe(ctx, b.cfg.ReplyTopic)
			switch {
			case err == nil:
				replies = r
			case errors.Is(err, esmill.ErrClosed):
				// The subscriber was closed: Execute fails with ErrClosed.
				b.cfg.Logger.Warn("cqrs: the reply subscriber is closed; Execute fails from now on", "topic", b.cfg.ReplyTopic)
				return
			default:
				b.cfg.Logger.Warn("cqrs: subscribe to replies failed; retrying", "topic", b.cfg.ReplyTopic, "error", err)
			}
		}
	}
}

// deliver hands replies to their waiters until the subscription ends, and
// reports whether it received any.
func (b *CommandBus) deliver(replies <-chan *message.Message) bool {
	got := false
	for msg := range replies {
		got = true
		var rep Reply
		if err := json.Unmarshal(msg.Payload, &rep); err != nil {
			b.cfg.Logger.Warn("cqrs: undecodable reply", "uuid", msg.UUID, "error", err)
			msg.Ack()
			continue
		}
		b.mu.Lock()
		ch := b.waiters[msg.Metadata.Get(esmill.MetaReplyTo)]
		b.mu.Unlock()
		if ch != nil {
			select {
			case ch <- rep:
			default:
			}
		}
		msg.Ack()
	}
	return got
}

// Close stops receiving replies; pending Execute calls fail. It does not
// close the publisher or subscriber. It is idempotent.
func (b *CommandBus) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.stop()
	<-b.done
	return nil
}

// ReplyTopic returns the topic the bus receives replies on.
func (b *CommandBus) ReplyTopic() string { return b.cfg.ReplyTopic }

// Send publishes a command for entity id of type t and returns once the
// transport took it. It does not wait for the command to run.
func (b *CommandBus) Send(ctx context.Context, t aggregate.AnyType, id string, cmd aggregate.Command, opts ...SendOption) error {
	o := applySendOptions(opts)
	msg, err := newCommandMessage(t, id, cmd, &o)
	if err != nil {
		return err
	}
	topic := b.topicFor(t, id)
	ctx, span := b.startSendSpan(ctx, topic, msg)
	err = b.publish(ctx, topic, msg)
	endSpan(span, nil, err, nil)
	return err
}

func (b *CommandBus) topicFor(t aggregate.AnyType, id string) string {
	return namespaced(b.cfg.Namespace, b.cfg.Topic(t.Category(), PartitionOf(t.Category()+"-"+id, b.cfg.Partitions)))
}

// publishRetry spaces the bus's own retries of a publish that failed. A
// retry sends the same message (same UUID), so the executor runs the
// command once however many copies arrive.
var publishRetry = backoff.Policy{Initial: 20 * time.Millisecond, Max: 500 * time.Millisecond, Jitter: 0.2}

const publishAttempts = 4

func (b *CommandBus) publish(ctx context.Context, topic string, msg *message.Message) error {
	if err := b.checkPartitions(ctx); err != nil {
		return err
	}
	msg.Metadata.Set(esmill.MetaCommandPartitions, strconv.Itoa(b.cfg.Partitions))
	msg.SetContext(ctx)
	wait := publishRetry.Start()
	var err error
	for attempt := 1; ; attempt++ {
		if err = b.cfg.Publisher.Publish(topic, msg); err == nil {
			return nil
		}
		if attempt >= publishAttempts || wait.Wait(ctx) != nil {
			return fmt.Errorf("cqrs: publish to %s (%d attempts): %w", topic, attempt, err)
		}
		b.cfg.Logger.Warn("cqrs: publish failed; sending the same message again", "topic", topic, "uuid", msg.UUID, "error", err)
	}
}

// partitionCheckEvery is how often the bus checks its group's count.
const partitionCheckEvery = time.Minute

// checkPartitions compares the bus's partition count with its group's
// live routers', at most once a minute.
func (b *CommandBus) checkPartitions(ctx context.Context) error {
	if b.cfg.Group == nil {
		return nil
	}
	reader, ok := b.cfg.Group.Store.(lease.GroupReader)
	if !ok {
		return nil
	}
	b.checkMu.Lock()
	defer b.checkMu.Unlock()
	if !b.checkedAt.IsZero() && time.Since(b.checkedAt) < partitionCheckEvery {
		return b.checkErr
	}
	n, live, err := reader.GroupPartitions(ctx, b.cfg.Group.Group)
	if err != nil {
		// The store is unreachable: the publish will tell whether the
		// transport is; check again at the next send.
		b.cfg.Logger.Warn("cqrs: the partition count of the routers' group is unknown", "group", b.cfg.Group.Group, "error", err)
		return nil
	}
	b.checkedAt, b.checkErr = time.Now(), nil
	if live && n != b.cfg.Partitions {
		b.checkErr = &PartitionMismatchError{Group: b.cfg.Group.Group, Sender: b.cfg.Partitions, Router: n}
	}
	return b.checkErr
}

// Execute publishes a command and waits for its reply. A command the
// entity rejected returns a [*RemoteError] (errors.Is(err,
// aggregate.ErrRejected) holds). With no reply before ctx ends (or the
// bus timeout, when ctx has no deadline), it returns a [*TimeoutError]
// (ErrTimeout): the outcome is unknown. Calling Execute again with the
// same command for the same entity then retries it under the same
// command id (see BusConfig.RetryWindow), so that it runs at most once;
// pass AsNewCommand to send it as a new command instead.
func (b *CommandBus) Execute(ctx context.Context, t aggregate.AnyType, id string, cmd aggregate.Command, opts ...SendOption) (rep Reply, err error) {
	if b.cfg.ReplySubscriber == nil {
		return Reply{}, errors.New("cqrs: Execute needs BusConfig.ReplySubscriber")
	}
	o := applySendOptions(opts)
	explicitID, generatedCorrelation := o.messageUUID != "", o.correlationID == ""
	msg, err := newCommandMessage(t, id, cmd, &o)
	if err != nil {
		return Reply{}, err
	}
	topic := b.topicFor(t, id)
	var fp [32]byte
	remember := b.unknown != nil && !explicitID
	if remember {
		fp = fingerprint(topic, msg, generatedCorrelation)
		if !o.newCommand {
			if c, ok := b.unknown.take(fp); ok {
				// A retry of a call whose outcome is unknown: the same
				// command id, and the same correlation.
				msg.UUID = c.id
				if generatedCorrelation {
					msg.Metadata.Set(esmill.MetaCorrelationID, c.correlation)
				}
			}
		}
	}
	msg.Metadata.Set(esmill.MetaReplyTopic, b.cfg.ReplyTopic)
	ctx, span := b.startSendSpan(ctx, topic, msg)
	defer func() { endSpan(span, nil, err, nil) }()
	ch := make(chan Reply, 1)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return Reply{}, ErrClosed
	}
	b.waiters[msg.UUID] = ch
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.waiters, msg.UUID)
		b.mu.Unlock()
	}()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.cfg.Timeout)
		defer cancel()
	}
	unknown := func() (Reply, error) {
		if remember {
			b.unknown.put(fp, unknownCall{id: msg.UUID, correlation: msg.Metadata.Get(esmill.MetaCorrelationID), at: time.Now()})
		}
		return Reply{}, &TimeoutError{Command: cmd.CommandName(), EntityID: id, CommandID: msg.UUID, Err: ctx.Err()}
	}
	if err := b.publish(ctx, topic, msg); err != nil {
		if ctx.Err() != nil {
			return unknown()
		}
		return Reply{}, err
	}
	select {
	case rep := <-ch:
		if rep.Error != nil {
			return rep, rep.Error
		}
		return rep, nil
	case <-ctx.Done():
		return unknown()
	case <-b.done:
		return Reply{}, ErrClosed
	}
}

// Commands sends commands for one entity type with typed ids.
type Commands[S any, ID comparable] struct {
	bus *CommandBus
	t   *aggregate.Type[S, ID]
}

// For returns the typed entry point of a bus for entity type t.
func For[S any, ID comparable](bus *CommandBus, t *aggregate.Type[S, ID]) *Commands[S, ID] {
	return &Commands[S, ID]{bus: bus, t: t}
}

// Send publishes a command without waiting for it to run.
func (c *Commands[S, ID]) Send(ctx context.Context, id ID, cmd aggregate.Command, opts ...SendOption) error {
	return c.bus.Send(ctx, c.t, c.t.FormatID(id), cmd, opts...)
}

// Execute publishes a command and waits for its reply.
func (c *Commands[S, ID]) Execute(ctx context.Context, id ID, cmd aggregate.Command, opts ...SendOption) (Reply, error) {
	return c.bus.Execute(ctx, c.t, c.t.FormatID(id), cmd, opts...)
}
