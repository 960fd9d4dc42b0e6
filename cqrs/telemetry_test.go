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
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

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
