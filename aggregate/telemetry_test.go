package aggregate_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/sierradb/embedded"
)

// metricValues collects every sum (by name and attribute set) and the
// count of every histogram.
func metricValues(t *testing.T, r *sdkmetric.ManualReader) (sums map[string]int64, hist map[string]uint64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	sums, hist = map[string]int64{}, map[string]uint64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					sums[m.Name+label(p.Attributes)] += p.Value
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					sums[m.Name+label(p.Attributes)] = p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					hist[m.Name+label(p.Attributes)] += p.Count
					if p.Count > 0 && p.Sum <= 0 {
						t.Errorf("%s%s: %d samples summing to %v", m.Name, label(p.Attributes), p.Count, p.Sum)
					}
				}
			}
		}
	}
	return sums, hist
}

func label(s attribute.Set) string {
	out := ""
	for _, kv := range s.ToSlice() {
		out += "," + kv.Value.Emit()
	}
	return out
}

// The executor's metrics after a known workload: every count exact.
func TestExecutorMetrics(t *testing.T) {
	ctx := ctxT(t)
	c := newClient(t, embedded.RunT(t).Addr())
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	typ := accountType(aggregate.WithSnapshots[Account](2, 1))
	x1 := aggregate.Bind(newExec(t, c, aggregate.Config{MeterProvider: mp, CacheSize: 1}), typ)
	x2 := aggregate.Bind(newExec(t, c, aggregate.Config{MeterProvider: noop.NewMeterProvider()}), typ)
	a, b := newID("a"), newID("b")
	step := func(x *aggregate.Entities[Account, string], id string, cmd aggregate.Command, opts ...aggregate.ExecOption) {
		t.Helper()
		if _, err := x.Execute(ctx, id, cmd, opts...); err != nil && !errorsAs(err, new(*aggregate.RejectedError)) {
			t.Fatal(err)
		}
	}
	step(x1, a, Open{Owner: "a"})                                  // miss, executed; v0
	step(x1, a, Deposit{Amount: 100})                              // hit, executed; v1, snapshot saved (2 events)
	step(x1, a, Withdraw{Amount: 1000})                            // hit, rejected
	step(x1, a, Deposit{Amount: 1}, aggregate.WithCommandID("c1")) // hit, executed; v2
	step(x1, a, Deposit{Amount: 1}, aggregate.WithCommandID("c1")) // hit, idempotent
	step(x2, a, Deposit{Amount: 5})                                // not counted; v3
	step(x1, a, Deposit{Amount: 2})                                // hit, conflict, conflict_retried; v4, snapshot saved
	x3 := aggregate.Bind(newExec(t, c, aggregate.Config{MeterProvider: mp}), typ)
	step(x3, a, Deposit{Amount: 3}) // miss, snapshot loaded, executed
	step(x1, b, Open{Owner: "b"})   // miss, executed; a evicted from x1's cache of 1

	sums, hist := metricValues(t, reader)
	cat := typ.Category()
	want := map[string]int64{
		"esmill.commands," + cat + ",Open,executed":            1 + 1,
		"esmill.commands," + cat + ",Deposit,executed":         3,
		"esmill.commands," + cat + ",Deposit,idempotent":       1,
		"esmill.commands," + cat + ",Deposit,conflict_retried": 1,
		"esmill.commands," + cat + ",Withdraw,rejected":        1,
		"esmill.conflicts," + cat:                              1,
		"esmill.cache.hits," + cat:                             5,
		"esmill.cache.misses," + cat:                           3,
		"esmill.cache.evictions":                               1,
		"esmill.snapshot.saves," + cat:                         2,
		"esmill.snapshot.loads," + cat:                         1,
	}
	for k, v := range want {
		if sums[k] != v {
			t.Errorf("%s = %d, want %d", k, sums[k], v)
		}
	}
	for k, v := range sums {
		if _, ok := want[k]; !ok && k != "esmill.cache.entities" {
			t.Errorf("unexpected %s = %d", k, v)
		}
	}
	for _, k := range []string{"Open,executed", "Deposit,executed", "Deposit,idempotent", "Deposit,conflict_retried", "Withdraw,rejected"} {
		key := "esmill.command.duration," + cat + "," + k
		if hist[key] != uint64(want["esmill.commands,"+cat+","+k]) {
			t.Errorf("%s has %d samples, want %d", key, hist[key], want["esmill.commands,"+cat+","+k])
		}
	}
	t.Logf("counters: %v; histograms: %v", sums, hist)
}
