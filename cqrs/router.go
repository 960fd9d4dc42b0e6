package cqrs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
)

// DefaultPartitions is the default number of command topics per entity
// type.
const DefaultPartitions = 16

// RouterConfig configures a [CommandRouter].
type RouterConfig struct {
	// Executor runs the commands. Required.
	Executor *aggregate.Executor
	// Types are the entity types whose commands this router handles.
	// Required.
	Types []aggregate.AnyType
	// Partitions is the number of command topics per type; it must match
	// the bus's. Default: DefaultPartitions.
	Partitions int
	// Topic names the topic of one partition. Default: DefaultTopic.
	Topic func(category string, partition int) string
	// ReplyPublisher publishes replies to callers that wait for them.
	// Optional: without it, replies are not sent.
	ReplyPublisher message.Publisher
	// FailBadCommands returns poison outcomes (an undecodable message, an
	// unknown command, an invalid id, a panic in user code) as the
	// handler's error, for a poison-queue middleware, after replying,
	// instead of acking them.
	FailBadCommands bool
	// Logger receives warnings. Default: discard.
	Logger *slog.Logger
}

func (c *RouterConfig) setDefaults() {
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Topic == nil {
		c.Topic = DefaultTopic
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem with the configuration.
func (c RouterConfig) Validate() error {
	var errs []error
	if c.Executor == nil {
		errs = append(errs, errors.New("cqrs: RouterConfig.Executor is required"))
	}
	if len(c.Types) == 0 {
		errs = append(errs, errors.New("cqrs: RouterConfig.Types is required"))
	}
	seen := map[string]bool{}
	for _, t := range c.Types {
		if seen[t.Category()] {
			errs = append(errs, fmt.Errorf("cqrs: category %q listed twice", t.Category()))
		}
		seen[t.Category()] = true
	}
	if c.Partitions < 0 {
		errs = append(errs, errors.New("cqrs: Partitions must not be negative"))
	}
	return errors.Join(errs...)
}

// CommandRouter turns command messages into executor calls.
type CommandRouter struct {
	cfg   RouterConfig
	types map[string]aggregate.AnyType
}

// NewCommandRouter returns a router for the configured entity types.
func NewCommandRouter(cfg RouterConfig) (*CommandRouter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	r := &CommandRouter{cfg: cfg, types: make(map[string]aggregate.AnyType, len(cfg.Types))}
	for _, t := range cfg.Types {
		r.types[t.Category()] = t
	}
	return r, nil
}

// Topics returns every command topic the router consumes.
func (r *CommandRouter) Topics() []string {
	var topics []string
	for _, t := range r.cfg.Types {
		for p := range r.cfg.Partitions {
			topics = append(topics, r.cfg.Topic(t.Category(), p))
		}
	}
	return topics
}

// AddHandlers registers one consumer handler per command topic on a
// Watermill router, each subscribing with sub. Each handler is named after
// its topic ("esmill.commands.<category>.<n>" by default). Watermill runs
// the handlers concurrently, so entities in different partitions run in
// parallel while each entity's commands stay in order.
func (r *CommandRouter) AddHandlers(router *message.Router, sub message.Subscriber) []*message.Handler {
	var hs []*message.Handler
	for _, topic := range r.Topics() {
		hs = append(hs, router.AddConsumerHandler(topic, topic, sub, r.Handle))
	}
	return hs
}

// Handle runs one command message. It returns nil once the command's
// events are stored, or when its outcome is final (the command was
// idempotent, or rejected; see esmill.Classify): the caller gets the reply.
// A poison outcome (a message that does not decode, an unknown command, an
// invalid id, a panic) is answered too, and acked, or returned as the error
// when FailBadCommands is set, for a poison-queue middleware. A transient
// failure is returned, so that Watermill delivers the message again.
func (r *CommandRouter) Handle(msg *message.Message) error {
	ctx := msg.Context()
	d, err := decodeCommand(msg, r.types)
	if err != nil {
		r.cfg.Logger.Warn("cqrs: bad command message", "uuid", msg.UUID, "error", err)
		r.reply(ctx, msg, Reply{Version: -1, Error: remoteError(err)})
		if r.cfg.FailBadCommands {
			return err
		}
		return nil
	}
	res, err := r.cfg.Executor.ExecuteAny(ctx, d.typ, d.id, d.cmd, d.opts...)
	if err == nil {
		r.reply(ctx, msg, replyFromResult(res))
		return nil
	}
	switch class := esmill.Classify(err); class {
	case esmill.Final, esmill.Poison:
		r.reply(ctx, msg, replyFromFailure(res, err))
		if class == esmill.Poison && r.cfg.FailBadCommands {
			return err
		}
		return nil
	default:
		return fmt.Errorf("cqrs: %s %s: %w", d.cmd.CommandName(), d.id, err)
	}
}

func (r *CommandRouter) reply(ctx context.Context, cmd *message.Message, rep Reply) {
	topic := cmd.Metadata.Get(esmill.MetaReplyTopic)
	if topic == "" || r.cfg.ReplyPublisher == nil {
		return
	}
	b, err := json.Marshal(rep)
	if err != nil {
		r.cfg.Logger.Error("cqrs: encode reply", "error", err)
		return
	}
	msg := message.NewMessage(cmd.UUID+".reply", b)
	msg.Metadata.Set(esmill.MetaReplyTo, cmd.UUID)
	msg.Metadata.Set(esmill.MetaCorrelationID, cmd.Metadata.Get(esmill.MetaCorrelationID))
	msg.SetContext(context.WithoutCancel(ctx))
	if err := r.cfg.ReplyPublisher.Publish(topic, msg); err != nil {
		r.cfg.Logger.Warn("cqrs: reply not sent", "topic", topic, "error", err)
	}
}
