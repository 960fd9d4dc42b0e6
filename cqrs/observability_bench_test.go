package cqrs_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

// discard is a span exporter that drops everything: tracing with the SDK
// costs what it costs, without an exporter's.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// observabilityOn is the "on" side of BenchmarkObservability: the SDK
// tracer provider sampling every span (AlwaysSample) into a batch span
// processor whose exporter discards them (ESMILL_OBS_SPANS=sync: a
// synchronous processor instead), and the SDK meter provider with a
// manual reader (not collected during the run).
func observabilityOn(b *testing.B) rigTelemetry {
	processor := sdktrace.WithBatcher(discard{})
	if os.Getenv("ESMILL_OBS_SPANS") == "sync" {
		processor = sdktrace.WithSyncer(discard{})
	}
	tp := sdktrace.NewTracerProvider(processor, sdktrace.WithSampler(sdktrace.AlwaysSample()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { tp.Shutdown(context.Background()); mp.Shutdown(context.Background()) })
	return rigTelemetry{tp: tp, mp: mp}
}

// observabilityRounds is how many times each side runs in one benchmark
// run; the sides alternate (off, on, on, off, off, on, …) so that both
// meet the same server state and the same machine load.
const observabilityRounds = 10

// BenchmarkObservability compares, at 16 callers on the embedded server,
// the executor and the router over GoChannel with tracing and metrics on
// (observabilityOn) against off (the global no-op providers). One run
// sets both sides up on one server and interleaves them: b.N commands are
// split into observabilityRounds chunks per side, each chunk run by 16
// callers on the side's own 16 entities, in the order off, on, on, off, …
// Every chunk starts after a garbage collection (outside the timing). It
// reports each side's throughput (off-cmds/s, on-cmds/s, each the side's
// commands over the side's total time), their ratio (on/off) and each
// side's CPU time and allocations per command (the process's, the
// embedded server's included); esbench compares on-cmds/s with off-cmds/s
// over -count runs.
func BenchmarkObservability(b *testing.B) {
	addr := embedded.RunT(b).Addr()
	const callers = 16
	b.Run("embedded/executor/callers=16", func(b *testing.B) {
		var sides [2]func(ctx context.Context, entity string) error
		on := observabilityOn(b)
		for i, tl := range []rigTelemetry{{}, on} {
			c, err := sierradb.New(sierradb.Config{Addr: addr, PoolSize: 128})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			x, err := aggregate.NewExecutor(c, aggregate.Config{TracerProvider: tl.tp, MeterProvider: tl.mp})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { x.Close() })
			accounts := aggregate.Bind(x, Accounts)
			sides[i] = func(ctx context.Context, entity string) error {
				_, err := accounts.Execute(ctx, entity, Deposit{Amount: 1})
				return err
			}
		}
		offCPU := interleave(b, callers, sides)
		// The floor: what the "on" side cannot do without, measured
		// alone on the same providers. off / (off + floor) is the best
		// on/off the executor's CPU could reach with this SDK.
		floor := sdkFloor(b, on, callers, b.N/2)
		b.ReportMetric(floor, "sdk-floor-cpu-µs/cmd")
		b.ReportMetric(offCPU+floor, "best-on-cpu-µs/cmd")
	})
	b.Run("embedded/router-gochannel/callers=16", func(b *testing.B) {
		var sides [2]func(ctx context.Context, entity string) error
		for i, tl := range []rigTelemetry{{}, observabilityOn(b)} {
			accounts := cqrs.For(newRig(b, addr, transports[0], 16, tl).bus, Accounts)
			sides[i] = func(ctx context.Context, entity string) error {
				_, err := accounts.Execute(ctx, entity, Deposit{Amount: 1})
				return err
			}
		}
		interleave(b, callers, sides)
	})
}

// sdkFloor returns the process's CPU time per operation, in µs, of what
// the executor's "on" side adds at the least for one command, done ops
// times by n goroutines on tl's providers: one span started and ended
// with the seven attributes the executor sets, its context written as a
// traceparent, two counters and a histogram measured.
func sdkFloor(b *testing.B, tl rigTelemetry, n, ops int) float64 {
	if ops < 1 || cpuTime() == 0 {
		return 0
	}
	b.StopTimer()
	defer b.StartTimer()
	tracer := tl.tp.Tracer("floor")
	m := tl.mp.Meter("floor")
	commands, _ := m.Int64Counter("floor.commands")
	hits, _ := m.Int64Counter("floor.hits")
	took, _ := m.Float64Histogram("floor.duration")
	set := metric.WithAttributeSet(attribute.NewSet(attribute.String("esmill.category", "account"),
		attribute.String("esmill.command", "Deposit"), attribute.String("esmill.outcome", "executed")))
	add, rec := []metric.AddOption{set}, []metric.RecordOption{set}
	runtime.GC()
	used := cpuTime()
	_, err := chunk(context.Background(), n, ops, func(int) string { return "" }, func(ctx context.Context, _ string) error {
		began := time.Now()
		ctx, span := tracer.Start(ctx, "execute Deposit")
		carrier := propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(ctx, carrier)
		hits.Add(ctx, 1, add...)
		commands.Add(ctx, 1, add...)
		took.Record(ctx, time.Since(began).Seconds(), rec...)
		span.SetAttributes(attribute.String("esmill.category", "account"), attribute.String("esmill.command", "Deposit"),
			attribute.String("esmill.stream_id", "account-x"), attribute.String("esmill.outcome", "executed"),
			attribute.Int("esmill.attempts", 1), attribute.Int64("esmill.version", 1), attribute.Int("esmill.events", 1))
		span.End()
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return float64((cpuTime() - used).Nanoseconds()) / 1e3 / float64(ops)
}

// interleave runs b.N operations split between sides[0] (off) and
// sides[1] (on) in alternating chunks, each chunk spread over n callers
// with an entity each (the same entities in every chunk of a side), and
// reports both throughputs and their ratio. It returns the off side's
// CPU time per command in µs.
func interleave(b *testing.B, n int, sides [2]func(ctx context.Context, entity string) error) float64 {
	ctx := context.Background()
	run := watermill.NewShortUUID()
	chunks := 2 * observabilityRounds
	if b.N < chunks {
		chunks = 2
	}
	var took, cpu [2]time.Duration
	var done [2]int
	var allocs, bytes [2]uint64
	var ms runtime.MemStats
	b.ResetTimer()
	for c := range chunks {
		// Each chunk starts on a collected heap, so that a side does not
		// pay for the garbage the other left.
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		mallocs, alloced := ms.Mallocs, ms.TotalAlloc
		b.StartTimer()
		// off, on, on, off, off, on, …: each side goes first in half the
		// rounds.
		side := (c + c/2) % 2
		ops := b.N / chunks
		if c == chunks-1 {
			ops = b.N - (chunks-1)*(b.N/chunks)
		}
		used := cpuTime()
		d, err := chunk(ctx, n, ops, func(caller int) string { return fmt.Sprintf("o%s-%d-%d", run, side, caller) }, sides[side])
		if err != nil {
			b.Fatal(err)
		}
		took[side] += d
		cpu[side] += cpuTime() - used
		b.StopTimer()
		runtime.ReadMemStats(&ms)
		allocs[side] += ms.Mallocs - mallocs
		bytes[side] += ms.TotalAlloc - alloced
		b.StartTimer()
		done[side] += ops
	}
	b.StopTimer()
	if took[0] <= 0 || took[1] <= 0 {
		return 0
	}
	off := float64(done[0]) / took[0].Seconds()
	on := float64(done[1]) / took[1].Seconds()
	b.ReportMetric(off, "off-cmds/s")
	b.ReportMetric(on, "on-cmds/s")
	b.ReportMetric(on/off, "on/off")
	// The process's CPU time per command of each side (the embedded
	// server's included): less sensitive than throughput to what else
	// the machine runs.
	b.ReportMetric(float64(cpu[0].Microseconds())/float64(done[0]), "off-cpu-µs/cmd")
	b.ReportMetric(float64(cpu[1].Microseconds())/float64(done[1]), "on-cpu-µs/cmd")
	b.ReportMetric(float64(allocs[0])/float64(done[0]), "off-allocs/cmd")
	b.ReportMetric(float64(allocs[1])/float64(done[1]), "on-allocs/cmd")
	b.ReportMetric(float64(bytes[0])/float64(done[0]), "off-B/cmd")
	b.ReportMetric(float64(bytes[1])/float64(done[1]), "on-B/cmd")
	return float64(cpu[0].Nanoseconds()) / 1e3 / float64(done[0])
}

// chunk runs ops operations over n callers and returns the time taken.
func chunk(ctx context.Context, n, ops int, entity func(caller int) string, op func(ctx context.Context, entity string) error) (time.Duration, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	start := time.Now()
	for c := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := entity(c)
			for next.Add(1) <= int64(ops) {
				if err := op(ctx, e); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	if err, _ := failed.Load().(error); err != nil {
		return d, err
	}
	return d, nil
}
