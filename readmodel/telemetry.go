package readmodel

import (
	"context"
	"errors"
	"strconv"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/esmill/esmill/internal/telemetry"
)

// startSpan starts the consumer span of an event whose command's span is
// known; otherwise it starts nothing.
func (r *Runner[T]) startSpan(ctx context.Context, it *item[T]) (context.Context, trace.Span) {
	if !it.parent.IsValid() {
		return ctx, nil
	}
	return r.tracer.Start(trace.ContextWithRemoteSpanContext(ctx, it.parent), "process "+r.cfg.Name,
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
			telemetry.MessagingSystem.String("sierradb"),
			telemetry.MessagingOperationType.String("process"),
			telemetry.MessagingOperationName.String("process"),
			telemetry.MessagingMessageID.String(it.ev.ID.String()),
			telemetry.MessagingConsumerGroup.String(r.cfg.Name),
			telemetry.MessagingDestinationPart.String(strconv.Itoa(int(it.pos.Partition))),
			telemetry.Projection.String(r.cfg.Name),
			telemetry.Partition.Int(int(it.pos.Partition)),
			telemetry.Event.String(it.ev.Name),
			telemetry.StreamID.String(it.ev.StreamID),
			telemetry.Version.Int64(int64(it.ev.StreamVersion)),
		))
}

func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// registerMetrics reports the runner's Status as metrics at each
// collection.
func (r *Runner[T]) registerMetrics() (metric.Registration, error) {
	m := telemetry.Meter(r.cfg.MeterProvider)
	lag, err1 := m.Int64ObservableGauge(telemetry.MetricProjectionLag,
		metric.WithDescription("Events stored in a partition and not yet applied by this projection instance (head - applied)."))
	events, err2 := m.Int64ObservableCounter(telemetry.MetricProjectionEvents,
		metric.WithDescription("Events this runner has committed (applied, skipped or parked) since it started."))
	parked, err3 := m.Int64ObservableCounter(telemetry.MetricProjectionParked,
		metric.WithDescription("Events this runner has parked since it started."))
	owned, err4 := m.Int64ObservableGauge(telemetry.MetricProjectionPartitions,
		metric.WithDescription("Partitions this runner works on."))
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, err
	}
	name := telemetry.Projection.String(r.cfg.Name)
	set := metric.WithAttributeSet(attribute.NewSet(name))
	var mu sync.Mutex // callbacks of several readers may run at once
	parts := make(map[uint16]metric.ObserveOption)
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := r.Status()
		mu.Lock()
		defer mu.Unlock()
		o.ObserveInt64(events, int64(st.Handled), set)
		o.ObserveInt64(parked, int64(st.Parked), set)
		o.ObserveInt64(owned, int64(st.Owned), set)
		for _, p := range st.Partitions {
			if !p.Owned {
				continue
			}
			opt, ok := parts[p.Partition]
			if !ok {
				opt = metric.WithAttributeSet(attribute.NewSet(name, telemetry.Partition.Int(int(p.Partition))))
				parts[p.Partition] = opt
			}
			o.ObserveInt64(lag, p.Lag, opt)
		}
		return nil
	}, lag, events, parked, owned)
}
