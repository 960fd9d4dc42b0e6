package cqrs_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/middleware"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

type Flaky struct{}

func (Flaky) CommandName() string { return "Flaky" }

var errBusy = errors.New("the ledger service is busy")

var flakyType = aggregate.MustDefine[Account, string]("flaky",
	aggregate.On(func(a *Account, e Deposited) { a.Balance += e.Amount }),
	aggregate.Handle(func(a Account, c Flaky, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		return nil, esmill.MarkTransient(errBusy)
	}),
)

// A command whose retries run out is parked by the Retry middleware, and
// its caller gets a reply that says parked, and why, instead of a timeout;
// the poisoned count says one.
func TestParkedCommandIsAnswered(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := sierradb.New(sierradb.Config{Addr: embedded.RunT(t).Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	exec, err := aggregate.NewExecutor(client, aggregate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Close()
	gc := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 64, Persistent: true}, watermill.NopLogger{})
	defer gc.Close()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	cr, err := cqrs.NewCommandRouter(cqrs.RouterConfig{Executor: exec, Types: []aggregate.AnyType{flakyType}, Partitions: 2, ReplyPublisher: gc})
	if err != nil {
		t.Fatal(err)
	}
	retry, err := middleware.NewRetry(middleware.RetryConfig{MaxRetries: 2, InitialInterval: time.Millisecond,
		PoisonPublisher: gc, PoisonTopic: "poison", OnPark: cr.AnswerParked, MeterProvider: mp})
	if err != nil {
		t.Fatal(err)
	}
	poison, err := gc.Subscribe(ctx, "poison")
	if err != nil {
		t.Fatal(err)
	}
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	router.AddMiddleware(retry)
	cr.AddHandlers(router, gc)
	errs := make(chan error, 1)
	go func() { errs <- router.Run(context.Background()) }()
	defer func() {
		router.Close()
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}()
	<-router.Running()
	bus, err := cqrs.NewCommandBus(cqrs.BusConfig{Publisher: gc, ReplySubscriber: gc, Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()

	_, err = cqrs.For(bus, flakyType).Execute(ctx, "f1", Flaky{})
	if !errors.Is(err, cqrs.ErrParked) || !strings.Contains(err.Error(), errBusy.Error()) || errors.Is(err, cqrs.ErrTimeout) {
		t.Fatalf("Execute of a parked command: %v, want a reply that says parked and why", err)
	}
	select {
	case m := <-poison:
		m.Ack()
		if m.Metadata.Get(esmill.MetaPoisonAttempts) != "3" {
			t.Errorf("parked after %s attempts, want 3", m.Metadata.Get(esmill.MetaPoisonAttempts))
		}
	case <-ctx.Done():
		t.Fatal("nothing on the poison topic")
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "esmill.messages.poisoned" {
				for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
					total += p.Value
					if c, _ := p.Attributes.Value("esmill.class"); c.AsString() != "transient" {
						t.Errorf("class %q", c.AsString())
					}
				}
			}
		}
	}
	if total != 1 {
		t.Fatalf("esmill.messages.poisoned = %d, want 1", total)
	}
}

// The router's consumer span is the command's span: the executor tells
// its outcome there instead of in a span of its own (an executed, a
// rejected and a failed command), the failure is recorded once, and the
// executor called directly still makes its own span.
func TestRouterSpanIsTheCommandSpan(t *testing.T) {
	ctx := context.Background()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(ctx)
	client, err := sierradb.New(sierradb.Config{Addr: embedded.RunT(t).Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	exec, err := aggregate.NewExecutor(client, aggregate.Config{TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Close()
	cr, err := cqrs.NewCommandRouter(cqrs.RouterConfig{Executor: exec, Types: []aggregate.AnyType{Accounts, flakyType}, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	var lastUUID string
	run := func(typ aggregate.AnyType, cmd aggregate.Command) (error, tracetest.SpanStub) {
		t.Helper()
		spans.Reset()
		msg, err := cqrs.NewCommandMessage(typ, "ann", cmd)
		if err != nil {
			t.Fatal(err)
		}
		lastUUID = msg.UUID
		err = cr.Handle(msg)
		got := spans.GetSpans()
		var process []tracetest.SpanStub
		for _, s := range got {
			if strings.HasPrefix(s.Name, "execute") {
				t.Errorf("%s: the executor made a span of its own under the router's: %s", cmd.CommandName(), s.Name)
			}
			if s.Name == "process" {
				process = append(process, s)
			}
		}
		if len(process) != 1 {
			t.Fatalf("%s: %d process spans, want 1: %v", cmd.CommandName(), len(process), got)
		}
		return err, process[0]
	}
	attr := func(s tracetest.SpanStub, key string) string {
		for _, kv := range s.Attributes {
			if string(kv.Key) == key {
				return kv.Value.Emit()
			}
		}
		return ""
	}
	check := func(s tracetest.SpanStub, want map[string]string, exceptions int, status codes.Code) {
		t.Helper()
		for k, v := range want {
			if got := attr(s, k); got != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
		n := 0
		for _, e := range s.Events {
			if e.Name == "exception" {
				n++
			}
		}
		if n != exceptions || s.Status.Code != status {
			t.Errorf("%d exception events and status %v, want %d and %v", n, s.Status.Code, exceptions, status)
		}
		seen := map[string]bool{}
		for _, kv := range s.Attributes {
			if seen[string(kv.Key)] {
				t.Errorf("attribute %s twice", kv.Key)
			}
			seen[string(kv.Key)] = true
		}
	}

	err, s := run(Accounts, Deposit{Amount: 5})
	if err != nil {
		t.Fatal(err)
	}
	// At most 8 attributes (the SDK keeps them without a map); the
	// attempts and the events appear only when they are not 1.
	check(s, map[string]string{"messaging.system": "watermill", "messaging.operation.type": "process", "messaging.message.id": lastUUID,
		"esmill.command": "Deposit", "esmill.outcome": "executed", "esmill.stream_id": "account-ann", "esmill.version": "0",
		"esmill.events": "", "esmill.attempts": ""}, 0, codes.Unset)
	if len(s.Attributes) > 8 {
		t.Errorf("%d attributes on the span of a command executed at once, want at most 8: %v", len(s.Attributes), s.Attributes)
	}

	err, s = run(Accounts, Withdraw{Amount: 50})
	if err != nil {
		t.Fatalf("a rejection is answered, not returned: %v", err)
	}
	check(s, map[string]string{"esmill.command": "Withdraw", "esmill.outcome": "rejected", "esmill.version": "0", "esmill.events": "0"}, 1, codes.Unset)

	err, s = run(flakyType, Flaky{})
	if !errors.Is(err, errBusy) {
		t.Fatalf("a transient failure is returned for redelivery: %v", err)
	}
	check(s, map[string]string{"esmill.command": "Flaky", "esmill.stream_id": "flaky-ann", "esmill.outcome": "failed"}, 1, codes.Error)

	spans.Reset()
	if _, err := aggregate.Bind(exec, Accounts).Execute(ctx, "bob", Deposit{Amount: 1}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range spans.GetSpans() {
		names = append(names, s.Name)
		if s.Name == "execute Deposit" && attr(s, "esmill.outcome") != "executed" {
			t.Errorf("execute Deposit: outcome %q", attr(s, "esmill.outcome"))
		}
	}
	// The entity is new: its load is the one child.
	if strings.Join(names, ",") != "load,execute Deposit" {
		t.Errorf("the executor called directly made spans %v, want load and execute Deposit", names)
	}
}
