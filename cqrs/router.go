package cqrs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/internal/telemetry"
	"github.com/esmill/esmill/lease"
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
	// Namespace, when set, prefixes every command topic ("<namespace>."),
	// so that two environments sharing one Redis never consume each
	// other's commands (tested: TestNamespacesSeparateEnvironments). The
	// bus must use the same.
	Namespace string
	// Ownership, when set, makes the routers that share its group divide
	// the partitions among themselves: this router consumes a partition's
	// topics only while its lease member holds the partition, checks the
	// lease before running each command, and runs it under a fence that
	// lets the executor answer from its cache (see aggregate.Fence).
	// Without it, a router consumes every topic, as a single instance
	// should. Several routers without an Ownership on one consumer group
	// lose per-entity order (see the package documentation).
	Ownership *Ownership
	// ReplyPublisher publishes replies to callers that wait for them.
	// Optional: without it, replies are not sent. A reply it refuses
	// makes the handler return a *ReplyNotSentError (transient) instead
	// of acking the command message: the message is delivered again and
	// answered then.
	ReplyPublisher message.Publisher
	// FailBadCommands returns poison outcomes (an undecodable message, an
	// unknown command, an invalid id, a panic in user code) as the
	// handler's error, for a poison-queue middleware, after replying,
	// instead of acking them.
	FailBadCommands bool
	// Logger receives bad and poison commands and undeliverable replies
	// (warnings), panics with their stacks (errors), and at debug level
	// each transient failure returned to the transport. Default: discard.
	Logger *slog.Logger
	// TracerProvider makes a consumer span per command message ("process
	// <topic>"), a child of the sender's span when the message carries
	// its trace context (esmill.MetaTraceParent); the executor's spans
	// are its children. Default: the global provider.
	TracerProvider trace.TracerProvider
	// MeterProvider records the partitions the router holds
	// (esmill.router.partitions, with an Ownership). Default: the global
	// provider.
	MeterProvider metric.MeterProvider
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
	if c.Partitions < 0 || c.Partitions > 1<<16 {
		errs = append(errs, errors.New("cqrs: Partitions must be 0 (the default) to 65536"))
	}
	if c.Ownership != nil {
		if err := c.Ownership.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ErrRouterClosed: the command router was closed. It matches
// esmill.ErrClosed.
var ErrRouterClosed error = &esmill.ClosedError{Text: "cqrs: command router closed"}

// CommandRouter turns command messages into executor calls.
type CommandRouter struct {
	cfg   RouterConfig
	types map[string]aggregate.AnyType
	// partitionOfTopic maps each command topic to its partition.
	partitionOfTopic map[string]int

	mu   sync.Mutex
	gate *gate

	tracer trace.Tracer
	gauge  metric.Registration
}

// NewCommandRouter returns a router for the configured entity types.
func NewCommandRouter(cfg RouterConfig) (*CommandRouter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	r := &CommandRouter{cfg: cfg, types: make(map[string]aggregate.AnyType, len(cfg.Types)), partitionOfTopic: make(map[string]int),
		tracer: telemetry.Tracer(cfg.TracerProvider)}
	for _, t := range cfg.Types {
		r.types[t.Category()] = t
		for p := range cfg.Partitions {
			topic := r.topic(t.Category(), p)
			if _, dup := r.partitionOfTopic[topic]; dup {
				return nil, fmt.Errorf("cqrs: the Topic function names two partitions %q: it must give each category and partition a topic of its own", topic)
			}
			r.partitionOfTopic[topic] = p
		}
	}
	if cfg.Ownership != nil {
		if err := r.registerGauge(); err != nil {
			return nil, fmt.Errorf("cqrs: metrics: %w", err)
		}
	}
	return r, nil
}

// registerGauge reports the partitions held, until Close.
func (r *CommandRouter) registerGauge() error {
	m := telemetry.Meter(r.cfg.MeterProvider)
	g, err := m.Int64ObservableGauge(telemetry.MetricRouterPartitions,
		metric.WithDescription("Command partitions this router holds in its lease group."))
	if err != nil {
		return err
	}
	set := metric.WithAttributes(telemetry.Group.String(r.cfg.Ownership.Group))
	r.gauge, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(g, int64(len(r.Leases())), set)
		return nil
	}, g)
	return err
}

func (r *CommandRouter) topic(category string, p int) string {
	return namespaced(r.cfg.Namespace, r.cfg.Topic(category, p))
}

func namespaced(ns, topic string) string {
	if ns == "" {
		return topic
	}
	return ns + "." + topic
}

// Topics returns every command topic the router consumes.
func (r *CommandRouter) Topics() []string {
	var topics []string
	for _, t := range r.cfg.Types {
		for p := range r.cfg.Partitions {
			topics = append(topics, r.topic(t.Category(), p))
		}
	}
	return topics
}

// AddHandlers registers one consumer handler per command topic on a
// Watermill router, each subscribing with sub. Each handler is named after
// its topic ("esmill.commands.<category>.<n>" by default). Watermill runs
// the handlers concurrently, so entities in different partitions run in
// parallel while each entity's commands stay in order, as long as sub
// delivers a topic's next message only after the previous one is acked
// (watermill-redisstream, redispart and GoChannel with
// BlockPublishUntilSubscriberAck do).
//
// With an Ownership, the handlers subscribe through a gate: it joins the
// lease group once the Watermill router has started every handler, and
// subscribes to a partition's topics on sub only while it holds the
// partition. Call AddHandlers once per router then. When the Watermill
// router closes the handlers' subscriber, the gate leaves the group
// (handing its partitions over at once) and closes sub.
func (r *CommandRouter) AddHandlers(router *message.Router, sub message.Subscriber) []*message.Handler {
	if r.cfg.Ownership != nil {
		r.mu.Lock()
		if r.gate == nil {
			r.gate = newGate(r, sub)
		}
		sub = r.gate
		r.mu.Unlock()
	}
	var hs []*message.Handler
	for _, t := range r.cfg.Types {
		for p := range r.cfg.Partitions {
			topic := r.topic(t.Category(), p)
			static := r.spanAttrs(p, topic)
			hs = append(hs, router.AddConsumerHandler(topic, topic, sub, func(msg *message.Message) error {
				return r.handle(msg, p, static)
			}))
		}
	}
	return hs
}

// Close leaves the lease group, if the router has an Ownership and has
// joined it, releasing its partitions so that the others take them at
// once (the Watermill router's Close does that too, but its Run may return
// first): call it before closing the Redis client the lease store uses.
// It is idempotent, and returns once the group is left.
func (r *CommandRouter) Close() error {
	r.mu.Lock()
	g := r.gate
	if r.gauge != nil {
		r.gauge.Unregister()
		r.gauge = nil
	}
	r.mu.Unlock()
	if g != nil {
		return g.Close()
	}
	return nil
}

// Err returns the error that stopped the router's lease member (such as a
// *lease.PartitionCountError: another router of the group runs with
// another partition count), or nil.
func (r *CommandRouter) Err() error {
	r.mu.Lock()
	g := r.gate
	r.mu.Unlock()
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// Leases returns the partitions this router holds now (none without an
// Ownership).
func (r *CommandRouter) Leases() []lease.Lease {
	r.mu.Lock()
	g := r.gate
	r.mu.Unlock()
	if g == nil {
		return nil
	}
	return g.leases()
}

// Handle runs one command message. It returns nil once the command's
// events are stored, or when its outcome is final (the command was
// idempotent, or rejected; see esmill.Classify): the caller gets the reply.
// A poison outcome (a message that does not decode, an unknown command, an
// invalid id, a message sent for another partition count, a panic) is
// answered too, and acked, or returned as the error when FailBadCommands
// is set, for a poison-queue middleware. A transient failure is returned,
// so that Watermill delivers the message again.
func (r *CommandRouter) Handle(msg *message.Message) error {
	return r.handle(msg, -1, r.spanAttrs(-1, ""))
}

// handle runs a message that came from partition p's topic (-1:
// unknown); static is spanAttrs(p, topic).
func (r *CommandRouter) handle(msg *message.Message, p int, static spanStatic) (err error) {
	ctx, span, told := r.startSpan(msg, static)
	var recorded error // the executor's error, which it recorded on span
	defer func() {
		if v := recover(); v != nil {
			pe := &aggregate.PanicError{Where: "the command router's handling of message " + msg.UUID, Value: v, Stack: debug.Stack()}
			err = r.poison(ctx, msg, aggregate.Result{Version: -1}, pe)
		}
		endSpan(span, told, err, recorded)
	}()
	d, err := decodeCommand(msg, r.types)
	if err == nil {
		err = r.checkPartition(msg, d, p)
	}
	if err != nil {
		r.cfg.Logger.Warn("cqrs: bad command message", "uuid", msg.UUID, "error", err)
		rerr := r.reply(ctx, msg, Reply{Version: -1, Error: remoteError(err)})
		if r.cfg.FailBadCommands {
			return err
		}
		return rerr
	}
	opts := d.opts
	if h := holdOf(ctx); h != nil {
		if !h.valid() {
			return fmt.Errorf("%w: partition %d (token %d) of group %s: %s %s goes to its new owner",
				ErrNotOwner, h.partition, h.token, r.cfg.Ownership.Group, d.cmd.CommandName(), d.id)
		}
		opts = append(opts, aggregate.UnderFence(h.fence()))
	}
	res, err := r.cfg.Executor.ExecuteAny(ctx, d.typ, d.id, d.cmd, opts...)
	recorded = err
	if err == nil {
		return r.reply(ctx, msg, replyFromResult(res))
	}
	switch class := esmill.Classify(err); class {
	case esmill.Final:
		return r.reply(ctx, msg, replyFromFailure(res, err))
	case esmill.Poison:
		return r.poison(ctx, msg, res, err)
	default:
		r.cfg.Logger.Debug("cqrs: transient failure; the transport delivers the command again", "uuid", msg.UUID,
			"command", d.cmd.CommandName(), "category", d.typ.Category(), "error", err)
		return fmt.Errorf("cqrs: %s %s: %w", d.cmd.CommandName(), d.id, err)
	}
}

// poison answers a poison outcome, logs a panic with its stack, and acks
// the message, or returns err for a poison queue (FailBadCommands).
func (r *CommandRouter) poison(ctx context.Context, msg *message.Message, res aggregate.Result, err error) error {
	var pe *aggregate.PanicError
	if errors.As(err, &pe) {
		r.cfg.Logger.Error("cqrs: panic while handling a command", "uuid", msg.UUID,
			"command", msg.Metadata.Get(esmill.MetaCommand), "entity", msg.Metadata.Get(esmill.MetaEntityID),
			"panic", fmt.Sprint(pe.Value), "where", pe.Where, "stack", string(pe.Stack))
	} else {
		r.cfg.Logger.Warn("cqrs: command cannot be handled", "uuid", msg.UUID, "error", err)
	}
	rerr := r.reply(ctx, msg, replyFromFailure(res, err))
	if r.cfg.FailBadCommands {
		return err
	}
	return rerr
}

// checkPartition refuses a message sent for another partition count, or
// to the topic of a partition its entity does not belong to: the bus and
// this router disagree on Partitions or Topic, and the entity's commands
// would be split over two topics, losing their order.
func (r *CommandRouter) checkPartition(msg *message.Message, d decoded, p int) error {
	if v := msg.Metadata.Get(esmill.MetaCommandPartitions); v != "" && v != strconv.Itoa(r.cfg.Partitions) {
		n, err := strconv.Atoi(v)
		if err != nil {
			return &BadCommandError{MessageUUID: msg.UUID, Reason: "metadata " + esmill.MetaCommandPartitions + " is not a number", Err: err}
		}
		return &BadCommandError{MessageUUID: msg.UUID, Reason: "partition count", Err: &PartitionMismatchError{Sender: n, Router: r.cfg.Partitions}}
	}
	if p < 0 {
		return nil
	}
	if want := PartitionOf(d.typ.Category()+"-"+d.id, r.cfg.Partitions); want != p {
		return &BadCommandError{MessageUUID: msg.UUID, Reason: fmt.Sprintf(
			"entity %s-%s belongs to partition %d of %d, but came through the topic of partition %d: "+
				"the sender and this router disagree on Partitions or Topic (give both the same)",
			d.typ.Category(), d.id, want, r.cfg.Partitions, p)}
	}
	return nil
}

// reply publishes rep to the command's reply topic. It returns a
// *ReplyNotSentError when the publisher refuses it, for the handler to
// return: the command message is then not acked, and its redelivery is
// answered (the executor knows the command id, so it does not run twice).
func (r *CommandRouter) reply(ctx context.Context, cmd *message.Message, rep Reply) error {
	topic := cmd.Metadata.Get(esmill.MetaReplyTopic)
	if topic == "" || r.cfg.ReplyPublisher == nil {
		return nil
	}
	b, err := json.Marshal(rep)
	if err != nil {
		r.cfg.Logger.Error("cqrs: encode reply", "error", err)
		return nil
	}
	msg := message.NewMessage(cmd.UUID+".reply", b)
	msg.Metadata.Set(esmill.MetaReplyTo, cmd.UUID)
	msg.Metadata.Set(esmill.MetaCorrelationID, cmd.Metadata.Get(esmill.MetaCorrelationID))
	msg.SetContext(context.WithoutCancel(ctx))
	if err := r.cfg.ReplyPublisher.Publish(topic, msg); err != nil {
		r.cfg.Logger.Warn("cqrs: reply not sent; the command message goes back to the transport", "uuid", cmd.UUID, "topic", topic, "error", err)
		return &ReplyNotSentError{MessageUUID: cmd.UUID, Topic: topic, Err: err}
	}
	return nil
}

// AnswerParked answers the caller waiting for a command message that a
// retry middleware parked on its poison topic, with a reply whose error is
// of kind KindParked (errors.Is(err, ErrParked)) and says why, instead of
// leaving it to time out. Give it as middleware.RetryConfig.OnPark. A
// message without a reply topic is left alone.
func (r *CommandRouter) AnswerParked(msg *message.Message, class esmill.Class, cause error) {
	re := remoteError(cause)
	re.Kind, re.Class = KindParked, class.String()
	re.Message = "parked on the poison topic (" + class.String() + "): " + cause.Error()
	r.cfg.Logger.Warn("cqrs: command parked; answering its caller", "uuid", msg.UUID,
		"command", msg.Metadata.Get(esmill.MetaCommand), "class", class.String(), "error", cause)
	// OnPark cannot fail: a parked command whose reply is not sent is
	// logged by reply, and its caller times out.
	_ = r.reply(msg.Context(), msg, Reply{Version: -1, Error: re})
}
