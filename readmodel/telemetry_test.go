package readmodel_test

import (
	"context"
	"maps"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/memory"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

// The projection's metrics are its Status: lag per owned partition (0
// once caught up) and the events it handled.
func TestProjectionMetrics(t *testing.T) {
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
	wallets := aggregate.Bind(exec, Wallets)
	for _, id := range []string{"a", "b", "a"} {
		if _, err := wallets.Execute(ctx, id, Credit{Amount: 1}); err != nil {
			t.Fatal(err)
		}
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	type tx = *memory.Tx[Balances]
	store := memory.New(memory.Config[Balances]{New: func() Balances { return Balances{} }, Clone: maps.Clone[Balances]})
	r, err := readmodel.New(readmodel.Config[tx]{Name: "metered", Client: client, Store: store, MeterProvider: mp,
		Handlers: []readmodel.Handler[tx]{readmodel.On(Wallets, func(ctx context.Context, tx tx, id string, e Credited, m readmodel.Meta) error {
			(*tx.Model())[id] += e.Amount
			return nil
		})}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	st := r.Status()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	lagPoints, events := 0, int64(-1)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case "esmill.projection.lag":
				for _, p := range m.Data.(metricdata.Gauge[int64]).DataPoints {
					lagPoints++
					if p.Value != 0 {
						part, _ := p.Attributes.Value("esmill.partition")
						t.Errorf("partition %d: lag %d after Sync", part.AsInt64(), p.Value)
					}
				}
			case "esmill.projection.events":
				for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
					events = p.Value
				}
			}
		}
	}
	if lagPoints != st.Owned || lagPoints == 0 {
		t.Errorf("%d lag points, the runner owns %d partitions", lagPoints, st.Owned)
	}
	if events != int64(st.Handled) || events < 3 {
		t.Errorf("esmill.projection.events = %d, Status().Handled = %d (3 credits stored)", events, st.Handled)
	}
}
