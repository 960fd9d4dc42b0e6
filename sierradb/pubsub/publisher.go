package pubsub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/internal/backoff"
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
	// publisher never closes it: whoever created it does.
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
	// split, whatever its size. Default: [DefaultMaxBatchEvents].
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

// append queues req behind the stream's other calls and sends it, alone or
// joined with calls queued with it.
func (p *Publisher) append(t target, req *pubRequest) error {
	p.mu.Lock()
	st := p.stream(t)
	st.queue = append(st.queue, req)
	if st.busy {
		p.mu.Unlock()
		select {
		case <-req.wake:
		case <-req.ctx.Done():
		}
		p.mu.Lock()
		switch {
		case req.done:
			p.mu.Unlock()
			return req.err
		case !req.leader:
			// Cancelled while queued: never sent.
			st.queue = slices.DeleteFunc(st.queue, func(r *pubRequest) bool { return r == req })
			p.mu.Unlock()
			return req.ctx.Err()
		}
	} else {
		st.busy = true
	}

	// Leader: send the head of the queue (which is req, unless it was
	// cancelled), then hand over to the next queued call.
	batch := p.take(st)
	if len(batch) > 0 {
		known, version := st.known, st.version
		p.mu.Unlock()
		known, version, err := p.send(t, batch, known, version)
		p.mu.Lock()
		st.known, st.version = known, version
		for _, r := range batch {
			r.done, r.err = true, err
			if r != req {
				r.wake <- struct{}{}
			}
		}
	}
	if len(st.queue) > 0 {
		next := st.queue[0]
		next.leader = true
		next.wake <- struct{}{}
	} else {
		st.busy = false
	}
	p.mu.Unlock()
	return req.err
}

// stream returns the state of a stream, making room if needed. Call with
// p.mu held.
func (p *Publisher) stream(t target) *streamState {
	st, ok := p.streams[t.stream]
	if ok {
		return st
	}
	if len(p.streams) >= maxCachedStreams {
		for id, s := range p.streams {
			if !s.busy {
				delete(p.streams, id)
			}
			if len(p.streams) < maxCachedStreams/2 {
				break
			}
		}
	}
	st = &streamState{key: t.key}
	p.streams[t.stream] = st
	return st
}

// take removes the calls to send next from the head of the queue: the
// head alone if it has its own expected versions, else the head and the
// following calls without any, up to MaxBatchEvents events. Calls whose
// context is done are failed instead. Call with p.mu held.
func (p *Publisher) take(st *streamState) []*pubRequest {
	var batch []*pubRequest
	n := 0
	for len(st.queue) > 0 {
		r := st.queue[0]
		if err := r.ctx.Err(); err != nil {
			st.queue = st.queue[1:]
			r.done, r.err = true, err
			if !r.leader {
				r.wake <- struct{}{}
			}
			continue
		}
		if len(batch) > 0 && (r.explicit || batch[0].explicit || n+len(r.events) > p.cfg.MaxBatchEvents) {
			break
		}
		st.queue = st.queue[1:]
		batch = append(batch, r)
		n += len(r.events)
	}
	return batch
}

// send appends the events of a batch with consecutive expected versions
// and returns what it then knows of the stream's version.
func (p *Publisher) send(t target, batch []*pubRequest, known bool, version int64) (bool, int64, error) {
	ctx, release := batchContext(batch)
	defer release()
	known, version, err := p.sendCtx(ctx, t, batch, known, version)
	if cause := contextCause(ctx, err); cause != nil {
		err = fmt.Errorf("%w (%w)", cause, err)
	}
	return known, version, err
}

// contextCause returns ctx's error when it is what ended a failed request:
// the client reports a request cut short by its context as a network
// timeout, and the network deadline, set from the context's, may pass
// before the context itself is marked done.
func contextCause(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	var ne net.Error
	if dl, ok := ctx.Deadline(); ok && errors.As(err, &ne) && ne.Timeout() && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

func (p *Publisher) sendCtx(ctx context.Context, t target, batch []*pubRequest, known bool, version int64) (bool, int64, error) {
	var events []sierradb.NewEvent
	var expect []*sierradb.ExpectedVersion
	for _, r := range batch {
		events = append(events, r.events...)
		expect = append(expect, r.expect...)
	}
	retry := !batch[0].explicit && p.cfg.MaxConflictRetries >= 0
	// Several writers racing on one stream spread out a little.
	spread := backoff.Policy{Initial: time.Millisecond, Max: 50 * time.Millisecond, Jitter: 1}.Start()
	for attempt := 0; ; attempt++ {
		if !known {
			v, err := p.cfg.Client.StreamVersion(ctx, t.stream)
			if err != nil {
				return false, 0, err
			}
			known, version = true, v
		}
		next, loose := version, false
		for i := range events {
			if e := expect[i]; e != nil {
				events[i].ExpectedVersion = *e
				n, exact := e.Exact()
				switch {
				case exact:
					next, loose = int64(n)+1, false
				case e.IsEmpty():
					next, loose = 0, false
				default:
					// Any or exists (a server without strict
					// versioning): what follows is unchecked too.
					loose = true
				}
				continue
			}
			if loose {
				events[i].ExpectedVersion = sierradb.ExpectAny
				continue
			}
			events[i].ExpectedVersion = sierradb.ExpectAfter(next)
			next++
		}
		last, err := p.appendEvents(ctx, t, events)
		if err == nil {
			return true, last, nil
		}
		var wv *sierradb.WrongExpectedVersionError
		if !errors.As(err, &wv) {
			// The outcome of a failed request is unknown: read the
			// version again next time.
			return false, 0, err
		}
		known, version = wv.Parsed, wv.Current
		if !retry || attempt >= p.cfg.MaxConflictRetries {
			if retry {
				err = fmt.Errorf("gave up after %d conflicts: %w", attempt+1, err)
			}
			return known, version, err
		}
		p.cfg.Logger.Debug("sierradb/pubsub: version conflict, appending again",
			"stream", t.stream, "current", wv.Current, "attempt", attempt+1)
		if attempt > 0 {
			if err := spread.Wait(ctx); err != nil {
				return known, version, err
			}
		}
	}
}

func (p *Publisher) appendEvents(ctx context.Context, t target, events []sierradb.NewEvent) (int64, error) {
	if len(events) == 1 {
		res, err := p.cfg.Client.Append(ctx, events[0])
		return int64(res.StreamVersion), err
	}
	res, err := p.cfg.Client.AppendMulti(ctx, t.key, events)
	if err != nil {
		return 0, err
	}
	return int64(res.Events[len(res.Events)-1].StreamVersion), nil
}

// batchContext returns a context that is done when every call of the batch
// has a done context: one caller giving up does not fail the others.
func batchContext(batch []*pubRequest) (context.Context, func()) {
	if len(batch) == 1 {
		return batch[0].ctx, func() {}
	}
	for _, r := range batch {
		if r.ctx.Done() == nil {
			return context.Background(), func() {}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var left atomic.Int32
	left.Store(int32(len(batch)))
	stops := make([]func() bool, len(batch))
	for i, r := range batch {
		stops[i] = context.AfterFunc(r.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
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
