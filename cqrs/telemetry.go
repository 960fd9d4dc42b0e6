package cqrs

import (
	"context"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/internal/telemetry"
)

// spanAttrs are the attributes of the consumer spans of partition p's
// topic (-1, "": unknown) that do not depend on the message; AddHandlers
// builds them once per handler.
func (r *CommandRouter) spanAttrs(p int, topic string) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		telemetry.MessagingSystem.String(telemetry.SystemWatermill),
		telemetry.MessagingOperationType.String("process"),
		telemetry.MessagingOperationName.String("process"),
	}
	if topic != "" {
		attrs = append(attrs, telemetry.MessagingDestination.String(topic))
	}
	if p >= 0 {
		attrs = append(attrs, telemetry.MessagingDestinationPart.String(strconv.Itoa(p)), telemetry.Partition.Int(p))
	}
	if r.cfg.Ownership != nil {
		attrs = append(attrs, telemetry.MessagingConsumerGroup.String(r.cfg.Ownership.Group))
	}
	return attrs
}

// startSpan starts the consumer span of a command message, continuing the
// sender's trace, and sets it on the message's context. static is
// spanAttrs(p, topic).
func (r *CommandRouter) startSpan(msg *message.Message, topic string, static []attribute.KeyValue) (context.Context, trace.Span) {
	ctx := telemetry.ExtractMessage(msg.Context(), msg.Metadata)
	name := "process"
	if topic != "" {
		name += " " + topic
	}
	// One slice of the right size: the span's options copy it.
	attrs := make([]attribute.KeyValue, len(static), len(static)+4)
	copy(attrs, static)
	attrs = append(attrs,
		telemetry.MessagingMessageID.String(msg.UUID),
		telemetry.Command.String(msg.Metadata.Get(esmill.MetaCommand)),
		telemetry.Category.String(msg.Metadata.Get(esmill.MetaCategory)),
	)
	if c := msg.Metadata.Get(esmill.MetaCorrelationID); c != "" {
		attrs = append(attrs, telemetry.MessagingConversationID.String(c))
	}
	ctx, span := r.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
	msg.SetContext(ctx)
	return ctx, span
}

// endSpan ends a span with the error that ends its operation.
func endSpan(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// startSendSpan starts the producer span of a command message and writes
// its trace context into the message.
func (b *CommandBus) startSendSpan(ctx context.Context, topic string, msg *message.Message) (context.Context, trace.Span) {
	ctx, span := b.tracer.Start(ctx, "send "+topic, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
		telemetry.MessagingSystem.String(telemetry.SystemWatermill),
		telemetry.MessagingOperationType.String("send"),
		telemetry.MessagingOperationName.String("send"),
		telemetry.MessagingDestination.String(topic),
		telemetry.MessagingMessageID.String(msg.UUID),
		telemetry.MessagingConversationID.String(msg.Metadata.Get(esmill.MetaCorrelationID)),
		telemetry.Command.String(msg.Metadata.Get(esmill.MetaCommand)),
		telemetry.Category.String(msg.Metadata.Get(esmill.MetaCategory)),
	))
	telemetry.InjectMessage(ctx, msg.Metadata)
	return ctx, span
}
