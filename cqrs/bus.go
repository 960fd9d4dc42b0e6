package cqrs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
)

// BusConfig configures a [CommandBus].
type BusConfig struct {
	// Publisher sends command messages. Required. The bus does not close
	// it.
	Publisher message.Publisher
	// Partitions and Topic must match the routers'. Defaults:
	// DefaultPartitions, DefaultTopic.
	Partitions int
	Topic      func(category string, partition int) string
	// ReplySubscriber receives replies for Execute. Optional: without it
	// Execute fails. The bus does not close it.
	ReplySubscriber message.Subscriber
	// ReplyTopic is this bus's reply topic. Default:
	// "esmill.replies.<random>", unique per bus.
	ReplyTopic string
	// Timeout bounds Execute when ctx has no deadline. Default: 30s.
	Timeout time.Duration
	// Logger receives warnings. Default: discard.
	Logger *slog.Logger
}

func (c *BusConfig) setDefaults() {
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Topic == nil {
		c.Topic = DefaultTopic
	}
	if c.ReplyTopic == "" {
		c.ReplyTopic = "esmill.replies." + watermill.NewShortUUID()
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
	if c.Partitions < 0 {
		errs = append(errs, errors.New("cqrs: Partitions must not be negative"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("cqrs: Timeout must not be negative"))
	}
	return errors.Join(errs...)
}

// CommandBus sends commands as messages. It is safe for concurrent use.
type CommandBus struct {
	cfg BusConfig

	mu      sync.Mutex
	waiters map[string]chan Reply
	closed  bool

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
	b := &CommandBus{cfg: cfg, waiters: make(map[string]chan Reply), done: make(chan struct{})}
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
	go b.receive(replies)
	return b, nil
}

// receive hands replies to their waiters until the subscription ends.
func (b *CommandBus) receive(replies <-chan *message.Message) {
	defer close(b.done)
	for msg := range replies {
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
	msg, err := NewCommandMessage(t, id, cmd, opts...)
	if err != nil {
		return err
	}
	return b.publish(ctx, t, id, msg)
}

func (b *CommandBus) publish(ctx context.Context, t aggregate.AnyType, id string, msg *message.Message) error {
	msg.SetContext(ctx)
	topic := b.cfg.Topic(t.Category(), PartitionOf(t.Category()+"-"+id, b.cfg.Partitions))
	if err := b.cfg.Publisher.Publish(topic, msg); err != nil {
		return fmt.Errorf("cqrs: publish to %s: %w", topic, err)
	}
	return nil
}

// Execute publishes a command and waits for its reply. A command the
// entity rejected returns a [*RemoteError] (errors.Is(err,
// aggregate.ErrRejected) holds). With no reply before ctx's deadline (or
// the bus timeout), it returns [ErrTimeout]: the command may still run.
func (b *CommandBus) Execute(ctx context.Context, t aggregate.AnyType, id string, cmd aggregate.Command, opts ...SendOption) (Reply, error) {
	if b.cfg.ReplySubscriber == nil {
		return Reply{}, errors.New("cqrs: Execute needs BusConfig.ReplySubscriber")
	}
	msg, err := NewCommandMessage(t, id, cmd, opts...)
	if err != nil {
		return Reply{}, err
	}
	msg.Metadata.Set(esmill.MetaReplyTopic, b.cfg.ReplyTopic)
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
	if err := b.publish(ctx, t, id, msg); err != nil {
		return Reply{}, err
	}
	select {
	case rep := <-ch:
		if rep.Error != nil {
			return rep, rep.Error
		}
		return rep, nil
	case <-ctx.Done():
		return Reply{}, fmt.Errorf("%w: %s for %s: %w", ErrTimeout, cmd.CommandName(), id, ctx.Err())
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
