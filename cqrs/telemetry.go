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

// startSpan starts the consumer span of a command message, continuing the
// sender's trace, and sets it on the message's context.
func (r *CommandRouter) startSpan(msg *message.Message, p int, topic string) (context.Context, trace.Span) {
	ctx := telemetry.ExtractMessage(msg.Context(), msg.Metadata)
	name := "process"
	if topic != "" {
		name += " " + topic
	}
	attrs := []attribute.KeyValue{
		telemetry.MessagingSystem.String(telemetry.SystemWatermill),
		telemetry.MessagingOperationType.String("process"),
		telemetry.MessagingOperationName.String("process"),
		telemetry.MessagingMessageID.String(msg.UUID),
		telemetry.Command.String(msg.Metadata.Get(esmill.MetaCommand)),
		telemetry.Category.String(msg.Metadata.Get(esmill.MetaCategory)),
	}
	if topic != "" {
		attrs = append(attrs, telemetry.MessagingDestination.String(topic))
	}
	if p >= 0 {
		attrs = append(attrs, telemetry.MessagingDestinationPart.String(strconv.Itoa(p)), telemetry.Partition.Int(p))
	}
	if c := msg.Metadata.Get(esmill.MetaCorrelationID); c != "" {
		attrs = append(attrs, telemetry.MessagingConversationID.String(c))
	}
	if r.cfg.Ownership != nil {
		attrs = append(attrs, telemetry.MessagingConsumerGroup.String(r.cfg.Ownership.Group))
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
