package telemetry

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// A command span is found once, and only while it is the context's span
// and records: not under a span started after it, not by a second command
// run with the context, and not once it ended (a message's context kept
// past its command, its Told back in the pool and taken for another span).
func TestCommandSpan(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background())
	tracer := tp.Tracer("test")
	mark := func() (context.Context, *Told) {
		ctx, span := tracer.Start(context.Background(), "process")
		told := NewTold(span)
		told.Attrs = append(told.Attrs, attribute.String("k", "v"))
		return WithCommandSpan(ctx, told), told
	}

	marked, told := mark()
	under, child := tracer.Start(marked, "child")
	if _, ok := CommandSpan(under); ok {
		t.Error("CommandSpan found the marked span under a span started after it")
	}
	child.End()
	if got, ok := CommandSpan(marked); !ok || got != told {
		t.Fatalf("CommandSpan of the marked context: %v, %v", got, ok)
	}
	if _, ok := CommandSpan(marked); ok {
		t.Error("CommandSpan gave the marked span to a second caller")
	}
	if _, ok := CommandSpan(context.Background()); ok {
		t.Error("CommandSpan found a span in an empty context")
	}
	span := told.Span
	told.Flush()
	span.End()

	ended, told2 := mark()
	span2 := told2.Span
	told2.Flush()
	span2.End()
	// The pool may hand the same Told to the next span.
	_, next := tracer.Start(context.Background(), "next")
	reused := NewTold(next)
	if _, ok := CommandSpan(ended); ok {
		t.Error("CommandSpan found the span of a command that ended")
	}
	reused.Flush()
	next.End()

	for _, s := range spans.GetSpans() {
		if s.Name == "process" && (len(s.Attributes) != 1 || s.Attributes[0] != attribute.String("k", "v")) {
			t.Errorf("a process span's attributes: %v, want k=v", s.Attributes)
		}
	}
}
