package aggregate_test

import (
	"context"
	"maps"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

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

// The executor's spans after a known workload: a command answered from
// the cached state and appended at the first attempt is one span; a load
// from the store, a decision that reads the stream, a failed append and
// every step of a command run again are children of it.
func TestExecutorSpans(t *testing.T) {
	ctx := ctxT(t)
	c := newClient(t, embedded.RunT(t).Addr())
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background())
	typ := accountType()
	x1 := aggregate.Bind(newExec(t, c, aggregate.Config{TracerProvider: tp}), typ)
	x2 := aggregate.Bind(newExec(t, c, aggregate.Config{TracerProvider: tracenoop.NewTracerProvider()}), typ)
	a := newID("a")
	// shape runs cmd through x1 and returns the children of its span by
	// name (with the number of each) and the span's attributes.
	shape := func(cmd aggregate.Command) (children map[string]int, attrs map[string]string, errored map[string]bool) {
		t.Helper()
		spans.Reset()
		if _, err := x1.Execute(ctx, a, cmd); err != nil && !errorsAs(err, new(*aggregate.RejectedError)) {
			t.Fatal(err)
		}
		children, attrs, errored = map[string]int{}, map[string]string{}, map[string]bool{}
		var root tracetest.SpanStub
		for _, s := range spans.GetSpans() {
			if !s.Parent.IsValid() {
				root = s
			}
		}
		if root.Name != "execute "+cmd.CommandName() {
			t.Fatalf("no span named %q among %d", "execute "+cmd.CommandName(), len(spans.GetSpans()))
		}
		for _, kv := range root.Attributes {
			attrs[string(kv.Key)] = kv.Value.Emit()
		}
		for _, s := range spans.GetSpans() {
			if s.Parent.IsValid() {
				if s.Parent.SpanID() != root.SpanContext.SpanID() {
					t.Errorf("span %q is not a child of %q", s.Name, root.Name)
				}
				if s.StartTime.Before(root.StartTime) || s.EndTime.After(root.EndTime) {
					t.Errorf("span %q (%v–%v) is outside its parent (%v–%v)", s.Name, s.StartTime, s.EndTime, root.StartTime, root.EndTime)
				}
				children[s.Name]++
				errored[s.Name] = errored[s.Name] || s.Status.Code == codes.Error
			}
		}
		return children, attrs, errored
	}
	check := func(step string, got map[string]int, want map[string]int) {
		t.Helper()
		if !maps.Equal(got, want) {
			t.Errorf("%s: child spans %v, want %v", step, got, want)
		}
	}

	ch, at, _ := shape(Open{Owner: "a"})
	check("first command (a load from the store)", ch, map[string]int{"load": 1})
	if at["esmill.outcome"] != "executed" || at["esmill.version"] != "0" || at["esmill.events"] != "1" || at["esmill.attempts"] != "1" {
		t.Errorf("first command's span: %v", at)
	}
	ch, at, _ = shape(Deposit{Amount: 10})
	check("a command on the cached state", ch, map[string]int{})
	if at["esmill.version"] != "1" || at["esmill.stream_id"] != typ.StreamID(a) {
		t.Errorf("second command's span: %v", at)
	}
	ch, at, _ = shape(Withdraw{Amount: 1000})
	check("a rejection (read the stream first)", ch, map[string]int{"decide": 1})
	if at["esmill.outcome"] != "rejected" {
		t.Errorf("rejection's span: %v", at)
	}
	if _, err := x2.Execute(ctx, a, Deposit{Amount: 1}); err != nil {
		t.Fatal(err)
	}
	ch, at, errored := shape(Deposit{Amount: 2})
	check("a conflict", ch, map[string]int{"append": 2, "load": 1, "decide": 1})
	if !errored["append"] || at["esmill.outcome"] != "conflict_retried" || at["esmill.attempts"] != "2" || at["esmill.version"] != "3" {
		t.Errorf("conflict's span: %v (a failed append: %v)", at, errored["append"])
	}
}
