package aggregate

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/internal/telemetry"
)

// instruments are the executor's tracer and metrics (see the package
// documentation, "Observability").
type instruments struct {
	tracer    trace.Tracer
	commands  metric.Int64Counter
	duration  metric.Float64Histogram
	conflicts metric.Int64Counter
	hits      metric.Int64Counter
	misses    metric.Int64Counter
	evictions metric.Int64Counter
	snapLoads metric.Int64Counter
	snapSaves metric.Int64Counter
	gauge     metric.Registration

	byCommand  *telemetry.Sets[commandKey]
	byCategory *telemetry.Sets[string]
	spanNames  sync.Map // command name -> span name
}

type commandKey struct{ category, command, outcome string }

func newInstruments(cfg Config, cache *cache) (*instruments, error) {
	m := telemetry.Meter(cfg.MeterProvider)
	in := &instruments{
		tracer: telemetry.Tracer(cfg.TracerProvider),
		byCommand: telemetry.NewSets(func(k commandKey) attribute.Set {
			return attribute.NewSet(telemetry.Category.String(k.category), telemetry.Command.String(k.command), telemetry.Outcome.String(k.outcome))
		}),
		byCategory: telemetry.NewSets(func(c string) attribute.Set { return attribute.NewSet(telemetry.Category.String(c)) }),
	}
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	in.commands = counter(telemetry.MetricCommands, "Commands run by the executor, by outcome.")
	in.conflicts = counter(telemetry.MetricConflicts, "Appends refused because another writer got there first.")
	in.hits = counter(telemetry.MetricCacheHits, "Commands that found their entity loaded in the cache.")
	in.misses = counter(telemetry.MetricCacheMisses, "Commands that loaded their entity from the store.")
	in.evictions = counter(telemetry.MetricCacheEvictions, "Entities dropped from the cache (bound or idle).")
	in.snapLoads = counter(telemetry.MetricSnapshotLoads, "Snapshots loaded and used.")
	in.snapSaves = counter(telemetry.MetricSnapshotSaves, "Snapshots saved.")
	var err error
	in.duration, err = m.Float64Histogram(telemetry.MetricCommandDuration, metric.WithUnit("s"),
		metric.WithDescription("Time from a command's arrival at the executor to its outcome."))
	errs = append(errs, err)
	entities, err := m.Int64ObservableGauge(telemetry.MetricCacheEntities, metric.WithDescription("Entities in the executor's cache."))
	errs = append(errs, err)
	if err == nil {
		in.gauge, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
			o.ObserveInt64(entities, int64(cache.len()))
			return nil
		}, entities)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	cache.onEvict = func() { in.evictions.Add(context.Background(), 1) }
	return in, nil
}

// spanName returns the name of a command's span, "execute <command>",
// made once per command name.
func (in *instruments) spanName(command string) string {
	if v, ok := in.spanNames.Load(command); ok {
		return v.(string)
	}
	v, _ := in.spanNames.LoadOrStore(command, "execute "+command)
	return v.(string)
}

func (in *instruments) close() {
	if in.gauge != nil {
		in.gauge.Unregister()
	}
}

// outcome names what a command's result and error mean.
func outcome(res Result, err error, conflicts int) string {
	switch {
	case err != nil && esmill.Classify(err) == esmill.Final:
		return telemetry.OutcomeRejected
	case err != nil:
		return telemetry.OutcomeFailed
	case res.Idempotent:
		return telemetry.OutcomeIdempotent
	case conflicts > 0:
		return telemetry.OutcomeConflictRetried
	}
	return telemetry.OutcomeExecuted
}

// record counts a command's outcome and tells its span. routed is nil
// when the span is the executor's own: record sets its attributes, all
// seven, and ends it. Otherwise the span is a command router's, which has
// the command's name: record adds the stream id, the outcome and the
// version, and the attempts and the events only when they are not 1 (so
// that the span keeps at most 8 attributes in the common case, which the
// SDK stores without a map of their keys), and the router ends the span.
func (in *instruments) record(ctx context.Context, span trace.Span, routed *telemetry.Told, category, command, streamID string, res Result, err error, conflicts int, took time.Duration) {
	out := outcome(res, err, conflicts)
	set := in.byCommand.Get(commandKey{category, command, out})
	in.commands.Add(ctx, 1, set.Add...)
	in.duration.Record(ctx, took.Seconds(), set.Record...)
	if span.IsRecording() {
		t := routed
		if t == nil {
			t = telemetry.NewTold(span)
			t.Attrs = append(t.Attrs, telemetry.Category.String(category), telemetry.Command.String(command))
		}
		t.Attrs = append(t.Attrs, telemetry.StreamID.String(streamID), telemetry.Outcome.String(out), telemetry.Version.Int64(res.Version))
		if routed == nil || conflicts > 0 {
			t.Attrs = append(t.Attrs, telemetry.Attempts.Int(conflicts+1))
		}
		if routed == nil || len(res.Events) != 1 {
			t.Attrs = append(t.Attrs, telemetry.Events.Int(len(res.Events)))
		}
		if err != nil {
			span.RecordError(err)
			if out == telemetry.OutcomeFailed {
				span.SetStatus(codes.Error, err.Error())
			}
		}
		if routed == nil {
			t.Flush()
		}
	}
	if routed == nil {
		span.End()
	}
}

// child starts a child span when the command's span records; otherwise it
// returns the parent's (non-recording) span and costs nothing.
func (in *instruments) child(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, parent
	}
	return in.tracer.Start(ctx, name, trace.WithAttributes(attrs...))
}

// endChild ends a child span started by child.
func endChild(span trace.Span, err error) {
	if !span.IsRecording() {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// lateSpan is a child span decided on after its operation began: the
// common case (a decision from the cached state, an append that succeeds
// at the first attempt) is told in full by the command's own span, so a
// child is made, with the operation's start time, only when it carries
// more: the store was read, the append failed, or the command is being
// run again.
type lateSpan struct {
	in    *instruments
	ctx   context.Context
	name  string
	began time.Time // zero when the parent does not record: no span
	span  trace.Span
}

// late notes the start of an operation that may get a span named name.
func (in *instruments) late(ctx context.Context, name string) lateSpan {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return lateSpan{}
	}
	return lateSpan{in: in, ctx: ctx, name: name, began: time.Now()}
}

// open makes the span, once, if the parent records.
func (l *lateSpan) open() {
	if l.span == nil && !l.began.IsZero() {
		_, l.span = l.in.tracer.Start(l.ctx, l.name, trace.WithTimestamp(l.began))
	}
}

// opened says the span was made (set its attributes only then).
func (l *lateSpan) opened() bool { return l.span != nil }

// end ends the span, if it was made, with err.
func (l *lateSpan) end(err error) {
	if l.span != nil {
		endChild(l.span, err)
		l.span = nil
	}
}
