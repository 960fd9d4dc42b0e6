package telemetry

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/codec"
)

// Scope is the instrumentation scope of every tracer and meter of esmill.
const Scope = "github.com/esmill/esmill"

// Tracer returns esmill's tracer of tp, or of the global provider when tp
// is nil.
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(Scope)
}

// Meter returns esmill's meter of mp, or of the global provider when mp is
// nil.
func Meter(mp metric.MeterProvider) metric.Meter {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	return mp.Meter(Scope)
}

// propagator is W3C Trace Context, whatever the global propagator is: the
// trace context crosses processes of one esmill deployment, which must
// agree on the format without each configuring it.
var propagator = propagation.TraceContext{}

// messageCarrier reads and writes the trace keys of a message.
type messageCarrier message.Metadata

func (c messageCarrier) Get(k string) string { return c[k] }
func (c messageCarrier) Set(k, v string) {
	if k == esmill.MetaTraceParent || k == esmill.MetaTraceState {
		c[k] = v
	}
}
func (c messageCarrier) Keys() []string {
	return []string{esmill.MetaTraceParent, esmill.MetaTraceState}
}

// InjectMessage writes the trace context of ctx into md (nothing when ctx
// has no valid span context).
func InjectMessage(ctx context.Context, md message.Metadata) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	propagator.Inject(ctx, messageCarrier(md))
}

// ExtractMessage returns ctx with the remote span context of md, if any.
func ExtractMessage(ctx context.Context, md message.Metadata) context.Context {
	if md[esmill.MetaTraceParent] == "" {
		return ctx
	}
	return propagator.Extract(ctx, messageCarrier(md))
}

// envelopeCarrier reads and writes the trace fields of an envelope.
type envelopeCarrier struct{ m *codec.Metadata }

func (c envelopeCarrier) Get(k string) string {
	switch k {
	case esmill.MetaTraceParent:
		return c.m.TraceParent
	case esmill.MetaTraceState:
		return c.m.TraceState
	}
	return ""
}

func (c envelopeCarrier) Set(k, v string) {
	switch k {
	case esmill.MetaTraceParent:
		c.m.TraceParent = v
	case esmill.MetaTraceState:
		c.m.TraceState = v
	}
}

func (c envelopeCarrier) Keys() []string {
	return []string{esmill.MetaTraceParent, esmill.MetaTraceState}
}

// InjectEnvelope writes the trace context of ctx into m; it reports
// whether there was one.
func InjectEnvelope(ctx context.Context, m *codec.Metadata) bool {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return false
	}
	propagator.Inject(ctx, envelopeCarrier{m})
	return m.TraceParent != ""
}

// EnvelopeSpanContext returns the span context stored in m (invalid when
// there is none or it does not parse).
func EnvelopeSpanContext(m codec.Metadata) trace.SpanContext {
	if m.TraceParent == "" {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(propagator.Extract(context.Background(), envelopeCarrier{&m}))
}

// Attribute keys. Messaging ones follow the OpenTelemetry semantic
// conventions for messaging; esmill's own start with "esmill.".
const (
	MessagingSystem          = attribute.Key("messaging.system")
	MessagingOperationType   = attribute.Key("messaging.operation.type")
	MessagingOperationName   = attribute.Key("messaging.operation.name")
	MessagingDestination     = attribute.Key("messaging.destination.name")
	MessagingMessageID       = attribute.Key("messaging.message.id")
	MessagingConversationID  = attribute.Key("messaging.message.conversation_id")
	MessagingConsumerGroup   = attribute.Key("messaging.consumer.group.name")
	MessagingDestinationPart = attribute.Key("messaging.destination.partition.id")

	Category   = attribute.Key("esmill.category")
	Command    = attribute.Key("esmill.command")
	Outcome    = attribute.Key("esmill.outcome")
	StreamID   = attribute.Key("esmill.stream_id")
	EntityID   = attribute.Key("esmill.entity_id")
	Partition  = attribute.Key("esmill.partition")
	Projection = attribute.Key("esmill.projection")
	Group      = attribute.Key("esmill.group")
	Handler    = attribute.Key("esmill.handler")
	Class      = attribute.Key("esmill.class")
	Event      = attribute.Key("esmill.event")
	Version    = attribute.Key("esmill.version")
	Attempts   = attribute.Key("esmill.attempts")
	Events     = attribute.Key("esmill.events")
	Snapshot   = attribute.Key("esmill.snapshot")
)

// SystemWatermill is messaging.system: the transport under Watermill is
// the application's choice, so esmill names the layer it talks to.
const SystemWatermill = "watermill"

// Sets caches attribute sets by a comparable key, so that recording a
// measurement on a hot path allocates nothing after the first time: the
// option slices are passed on as they are (opts.Add...), where a single
// option would be put in a new slice at every call.
type Sets[K comparable] struct {
	m    sync.Map // K -> *Opts
	make func(K) attribute.Set
}

// Opts are the measurement options of one attribute set.
type Opts struct {
	Add    []metric.AddOption
	Record []metric.RecordOption
}

// NewSets returns a cache that builds a key's set with mk.
func NewSets[K comparable](mk func(K) attribute.Set) *Sets[K] {
	return &Sets[K]{make: mk}
}

// Get returns the measurement options of k's attribute set.
func (s *Sets[K]) Get(k K) *Opts {
	if v, ok := s.m.Load(k); ok {
		return v.(*Opts)
	}
	o := metric.WithAttributeSet(s.make(k))
	v, _ := s.m.LoadOrStore(k, &Opts{Add: []metric.AddOption{o}, Record: []metric.RecordOption{o}})
	return v.(*Opts)
}

// Told is a span and the attributes told about it so far, set on it in
// one call by Flush: the span copies them once, into a slice of the right
// size, and Told goes back to a pool. (Attributes given when a span starts
// are copied twice, and a span's slice grows by doubling when more come.)
type Told struct {
	Span  trace.Span
	Attrs []attribute.KeyValue
}

var toldPool = sync.Pool{New: func() any { return &Told{Attrs: make([]attribute.KeyValue, 0, 16)} }}

// NewTold returns an empty Told for span, from the pool.
func NewTold(span trace.Span) *Told {
	t := toldPool.Get().(*Told)
	t.Span = span
	return t
}

// Flush sets the attributes told on the span and returns t to the pool;
// t is not used after.
func (t *Told) Flush() {
	if len(t.Attrs) > 0 {
		t.Span.SetAttributes(t.Attrs...)
	}
	clear(t.Attrs)
	t.Attrs, t.Span = t.Attrs[:0], nil
	toldPool.Put(t)
}

// commandSpanKey is the context key of WithCommandSpan.
type commandSpanKey struct{}

// commandSpan is what WithCommandSpan puts in a context. span is never
// written after, so that a context kept past the command (a message's,
// handled again) is told apart without touching told, which goes back to
// its pool when the span ends (tested: TestCommandSpan).
type commandSpan struct {
	span  trace.Span
	told  *Told
	taken atomic.Bool
}

// WithCommandSpan returns ctx marking t.Span, ctx's own span, as the span
// of the command a message carries: the command router's consumer span.
// The executor tells its outcome in t instead of starting a span of its
// own under it (CommandSpan). t.Span records; t.Attrs has the command's
// esmill.command.
func WithCommandSpan(ctx context.Context, t *Told) context.Context {
	return context.WithValue(ctx, commandSpanKey{}, &commandSpan{span: t.Span, told: t})
}

// CommandSpan returns what WithCommandSpan marked, to the first caller
// only, while its span records and is ctx's span (no span was started
// under it since). Any other command run with ctx (one that a command's
// handler runs itself, or one run with a message's context after its
// span ended) gets a span of its own.
func CommandSpan(ctx context.Context) (*Told, bool) {
	cs, ok := ctx.Value(commandSpanKey{}).(*commandSpan)
	if !ok || cs.span != trace.SpanFromContext(ctx) || !cs.span.IsRecording() || !cs.taken.CompareAndSwap(false, true) {
		return nil, false
	}
	return cs.told, true
}
