package pubsub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/sierradb"
)

// DefaultMaxConflictRetries is the default [PublisherConfig.MaxConflictRetries].
const DefaultMaxConflictRetries = 10

// DefaultMaxBatchEvents is the default [PublisherConfig.MaxBatchEvents].
const DefaultMaxBatchEvents = 1000

// maxCachedStreams bounds the publisher's per-stream state (the last known
// version of each stream it wrote). Idle entries beyond it are dropped.
const maxCachedStreams = 4096

// PublisherConfig configures a [Publisher].
type PublisherConfig struct {
	// Client is the SierraDB client to append with. Required. The
	// publisher never closes it: whoever created it does (tested:
	// TestPublisherLifecycle).
	Client *sierradb.Client

	// Topics maps topics to streams. Optional: the zero value (a topic is
	// the stream id).
	Topics Topics

	// EventName names the event of a message.
	// Default: [EventNameFromMetadata].
	EventName func(topic string, msg *message.Message) string

	// ExpectedVersion gives the version the stream must be at before the
	// message's event. ok false means the message has none, and the
	// publisher finds the version itself, unless RequireExpectedVersion is
	// set. Default: [ExpectedVersionFromMetadata].
	ExpectedVersion func(topic string, msg *message.Message) (v sierradb.ExpectedVersion, ok bool, err error)

	// RequireExpectedVersion makes a message without an expected version
	// an error instead of appending after the stream's current version.
	// Default: false.
	RequireExpectedVersion bool

	// MaxConflictRetries is how many times a Publish call whose messages
	// carry no expected version is sent again after a version conflict,
	// each time after the version the server reported. -1 disables the
	// retry. Default: [DefaultMaxConflictRetries].
	MaxConflictRetries int

	// MaxBatchEvents caps how many events of concurrent Publish calls to
	// one stream are joined into one EMAPPEND. A single call is never
	// split, whatever its size (tested:
	// TestPublishCallOverMaxBatchEventsIsNotSplit). Default: [DefaultMaxBatchEvents].
	MaxBatchEvents int

	// Logger receives debug output. Default: discard.
	Logger *slog.Logger
}

func (c *PublisherConfig) setDefaults() {
	if c.EventName == nil {
		c.EventName = EventNameFromMetadata
	}
	if c.ExpectedVersion == nil {
		c.ExpectedVersion = ExpectedVersionFromMetadata
	}
	if c.MaxConflictRetries == 0 {
		c.MaxConflictRetries = DefaultMaxConflictRetries
	}
	if c.MaxBatchEvents == 0 {
		c.MaxBatchEvents = DefaultMaxBatchEvents
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem with the configuration.
func (c PublisherConfig) Validate() error {
	var errs []error
	if c.Client == nil {
		errs = append(errs, errors.New("sierradb/pubsub: PublisherConfig.Client is required"))
	}
	if c.MaxConflictRetries < -1 {
		errs = append(errs, errors.New("sierradb/pubsub: PublisherConfig.MaxConflictRetries must be -1 or more"))
	}
	if c.MaxBatchEvents < 0 {
		errs = append(errs, errors.New("sierradb/pubsub: PublisherConfig.MaxBatchEvents must not be negative"))
	}
	return errors.Join(errs...)
}

// Publisher appends Watermill messages to SierraDB streams. It is safe for
// concurrent use. See the package documentation for the mapping and the
// versioning rules.
type Publisher struct {
	cfg PublisherConfig

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
	streams  map[string]*streamState
}

// NewPublisher returns a publisher appending through cfg.Client.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return &Publisher{cfg: cfg, streams: make(map[string]*streamState)}, nil
}

// streamState serialises the appends of this publisher to one stream and
// remembers the stream's version after its last append. A single caller at
// a time (the leader) talks to the server; calls that arrive meanwhile
// queue and are sent together by the next leader.
type streamState struct {
	key     uuid.UUID
	busy    bool
	queue   []*pubRequest
	known   bool
	version int64
}

// pubRequest is one Publish call.
type pubRequest struct {
	events   []sierradb.NewEvent
	explicit bool // some event has its own expected version
	// expect holds each event's own expected version, or nil.
	expect []*sierradb.ExpectedVersion
	ctx    context.Context
	wake   chan struct{}
	leader bool
	done   bool
	err    error
}

// Publish appends msgs, in order, to the stream topic names, in one atomic
// EMAPPEND (EAPPEND for a single message): either every message is stored
// or none is. A nil error means every event is stored. Messages whose
// contexts are done are not sent; their context's error is returned.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.inflight.Add(1)
	p.mu.Unlock()
	defer p.inflight.Done()

	if len(msgs) == 0 {
		return nil
	}
	t, err := p.cfg.Topics.parseStream(topic)
	if err != nil {
		return err
	}
	req, err := p.newRequest(topic, t.stream, msgs)
	if err != nil {
		return err
	}
	ctx, release := requestContext(msgs)
	defer release()
	req.ctx = ctx
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sierradb/pubsub: publish to %q: %w", topic, err)
	}
	if err := p.append(t, req); err != nil {
		return fmt.Errorf("sierradb/pubsub: publish %d message(s) to %q: %w", len(msgs), topic, err)
	}
	return nil
}

func (p *Publisher) newRequest(topic, stream string, msgs []*message.Message) (*pubRequest, error) {
	req := &pubRequest{
		events: make([]sierradb.NewEvent, len(msgs)),
		expect: make([]*sierradb.ExpectedVersion, len(msgs)),
		wake:   make(chan struct{}, 1),
	}
	for i, msg := range msgs {
		if msg == nil {
			return nil, &MessageError{Reason: fmt.Sprintf("message %d is nil", i)}
		}
		name := p.cfg.EventName(topic, msg)
		if name == "" || len(name) > sierradb.MaxEventNameLen {
			return nil, &MessageError{UUID: msg.UUID, Key: esmill.MetaEventName,
				Reason: fmt.Sprintf("event name of %d bytes, want 1 to %d", len(name), sierradb.MaxEventNameLen)}
		}
		v, ok, err := p.cfg.ExpectedVersion(topic, msg)
		if err != nil {
			return nil, err
		}
		if ok {
			req.expect[i] = &v
			req.explicit = true
		} else if p.cfg.RequireExpectedVersion {
			return nil, &MessageError{UUID: msg.UUID, Key: esmill.MetaAppendExpectedVersion,
				Reason: "no expected version, and the publisher requires one"}
		}
		md, err := encodeMetadata(msg)
		if err != nil {
			return nil, err
		}
		req.events[i] = sierradb.NewEvent{StreamID: stream, Name: name, Payload: msg.Payload, Metadata: md}
	}
	return req, nil
}

// requestContext returns a context that is done as soon as any message's
// context is. Messages without a cancellable context cost nothing.
func requestContext(msgs []*message.Message) (context.Context, func()) {
	var ctxs []context.Context
	for _, m := range msgs {
		c := m.Context()
		if c.Done() == nil || slices.Contains(ctxs, c) {
			continue
		}
		ctxs = append(ctxs, c)
	}
	switch len(ctxs) {
	case 0:
		return context.Background(), func() {}
	case 1:
		return ctxs[0], func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	stops := make([]func() bool, len(ctxs))
	for i, c := range ctxs {
		stops[i] = context.AfterFunc(c, cancel)
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// Close stops accepting messages and waits for the Publish calls under way
// to finish. It does not close the client. It is idempotent.
func (p *Publisher) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.inflight.Wait()
	return nil
}
