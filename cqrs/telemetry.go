package cqrs

import (
	"context"
	"errors"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/internal/telemetry"
)

// spanAttrs returns the name of the consumer spans of partition p's topic
// (-1, "": unknown) and their attributes that do not depend on the
// message; AddHandlers builds them once per handler. They are few on purpose: with the
// message's and the executor's, a span in the common case has at most 8
// attributes, which the SDK stores without a map of their keys (README,
// "Traces"). The partition is in the topic's name; it is an attribute of
// its own, with the consumer group, when partitions have owners.
func (r *CommandRouter) spanAttrs(p int, topic string) spanStatic {
	st := spanStatic{name: "process"}
	if topic != "" {
		st.name += " " + topic
	}
	attrs := []attribute.KeyValue{
		telemetry.MessagingSystem.String(telemetry.SystemWatermill),
		telemetry.MessagingOperationType.String("process"),
	}
	if topic != "" {
		attrs = append(attrs, telemetry.MessagingDestination.String(topic))
	}
	if r.cfg.Ownership != nil {
		if p >= 0 {
			attrs = append(attrs, telemetry.MessagingDestinationPart.String(strconv.Itoa(p)))
		}
		attrs = append(attrs, telemetry.MessagingConsumerGroup.String(r.cfg.Ownership.Group))
	}
	st.attrs = attrs
	return st
}

// spanStatic is what the consumer spans of one topic share: their name,
// "process <topic>", and the attributes that do not depend on the message.
type spanStatic struct {
	name  string
	attrs []attribute.KeyValue
}

// startSpan starts the consumer span of a command message, continuing the
// sender's trace, and sets it on the message's context. static is
// spanAttrs(p, topic). When the span records, it is the command's span
// (telemetry.WithCommandSpan): the executor adds its outcome to the
// returned Told, and endSpan sets every attribute in one call. A sampler
// sees the span's name and kind. The category and the correlation id are
// the sender's span's (and the category is the stream id's prefix).
func (r *CommandRouter) startSpan(msg *message.Message, static spanStatic) (context.Context, trace.Span, *telemetry.Told) {
	ctx := telemetry.ExtractMessage(msg.Context(), msg.Metadata)
	ctx, span := r.tracer.Start(ctx, static.name, trace.WithSpanKind(trace.SpanKindConsumer))
	var told *telemetry.Told
	if span.IsRecording() {
		told = telemetry.NewTold(span)
		told.Attrs = append(append(told.Attrs, static.attrs...),
			telemetry.MessagingMessageID.String(msg.UUID),
			telemetry.Command.String(msg.Metadata.Get(esmill.MetaCommand)),
		)
		ctx = telemetry.WithCommandSpan(ctx, told)
	}
	msg.SetContext(ctx)
	return ctx, span, told
}

// endSpan ends a span with the error that ends its operation, unless
// that error is (or wraps) recorded, which the span has already; told,
// when not nil, has the span's attributes.
func endSpan(span trace.Span, told *telemetry.Told, err, recorded error) {
	if told != nil {
		told.Flush()
	}
	if err != nil && span.IsRecording() && (recorded == nil || !errors.Is(err, recorded)) {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// startSendSpan starts the producer span of a command message and writes
// its trace context into the message. A sampler sees the span's name and
// kind; its attributes are set in one call.
func (b *CommandBus) startSendSpan(ctx context.Context, topic string, msg *message.Message) (context.Context, trace.Span) {
	ctx, span := b.tracer.Start(ctx, "send "+topic, trace.WithSpanKind(trace.SpanKindProducer))
	if span.IsRecording() {
		told := telemetry.NewTold(span)
		told.Attrs = append(told.Attrs,
			telemetry.MessagingSystem.String(telemetry.SystemWatermill),
			telemetry.MessagingOperationType.String("send"),
			telemetry.MessagingOperationName.String("send"),
			telemetry.MessagingDestination.String(topic),
			telemetry.MessagingMessageID.String(msg.UUID),
			telemetry.MessagingConversationID.String(msg.Metadata.Get(esmill.MetaCorrelationID)),
			telemetry.Command.String(msg.Metadata.Get(esmill.MetaCommand)),
			telemetry.Category.String(msg.Metadata.Get(esmill.MetaCategory)),
		)
		told.Flush()
	}
	telemetry.InjectMessage(ctx, msg.Metadata)
	return ctx, span
}
