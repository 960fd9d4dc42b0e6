package sierradb_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
)

// benchTargets mirrors targets for benchmarks.
func eachBenchTarget(b *testing.B, f func(b *testing.B, c *sierradb.Client)) {
	for _, tg := range benchTargets {
		b.Run(tg.name, func(b *testing.B) {
			c, err := sierradb.New(sierradb.Config{Addr: tg.addr(b), PoolSize: 128})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			f(b, c)
		})
	}
}

type benchTarget struct {
	name string
	addr func(b *testing.B) string
}

var benchTargets = []benchTarget{
	{"sierradb", func(b *testing.B) string { return testservice.RequireSierraDB(b) }},
}

// BenchmarkAppend measures single-event appends (EAPPEND), each on its own
// stream's next version, from 1, 16 and 64 goroutines.
func BenchmarkAppend(b *testing.B) {
	eachBenchTarget(b, func(b *testing.B, c *sierradb.Client) {
		for _, workers := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("goroutines=%d", workers), func(b *testing.B) {
				runConcurrent(b, workers, func(ctx context.Context, stream string, v int64) error {
					_, err := c.Append(ctx, sierradb.NewEvent{StreamID: stream, Name: "E", ExpectedVersion: sierradb.ExpectAfter(v - 1), Payload: payload})
					return err
				}, 1)
			})
		}
	})
}

// BenchmarkAppendMulti10 measures EMAPPEND of 10 events to one stream, from
// 1, 16 and 64 goroutines. One op is one request (10 events).
func BenchmarkAppendMulti10(b *testing.B) {
	eachBenchTarget(b, func(b *testing.B, c *sierradb.Client) {
		for _, workers := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("goroutines=%d", workers), func(b *testing.B) {
				runConcurrent(b, workers, func(ctx context.Context, stream string, v int64) error {
					evs := make([]sierradb.NewEvent, 10)
					for i := range evs {
						evs[i] = sierradb.NewEvent{StreamID: stream, Name: "E", ExpectedVersion: sierradb.ExpectAfter(v*10 + int64(i) - 1), Payload: payload}
					}
					_, err := c.AppendMulti(ctx, sierradb.StreamPartitionKey(stream), evs)
					return err
				}, 10)
			})
		}
	})
}

var payload = make([]byte, 128)

// runConcurrent spreads b.N operations over workers goroutines, each on its
// own stream, and reports ops/s and events/s.
func runConcurrent(b *testing.B, workers int, op func(ctx context.Context, stream string, v int64) error, eventsPerOp int) {
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ResetTimer()
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("bench-%s-%d", uuid.NewString()[:8], w)
			for v := int64(0); next.Add(1) <= int64(b.N); v++ {
				if err := op(ctx, stream, v); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
	b.ReportMetric(float64(b.N*eventsPerOp)/elapsed.Seconds(), "events/s")
}

// BenchmarkSubscribeCatchUp measures a catch-up subscription reading
// 100,000 stored events of one partition, acknowledging each.
func BenchmarkSubscribeCatchUp(b *testing.B) {
	const total = 100_000
	eachBenchTarget(b, func(b *testing.B, c *sierradb.Client) {
		ctx := context.Background()
		key := uuid.New()
		p, err := c.PartitionOf(ctx, key)
		if err != nil {
			b.Fatal(err)
		}
		head, err := c.PartitionSequence(ctx, p)
		if err != nil {
			b.Fatal(err)
		}
		from := uint64(head + 1)
		// Seed in batches of 500 events over a few streams.
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				stream := fmt.Sprintf("catchup-%s-%d", uuid.NewString()[:8], w)
				for v := int64(0); v < total/8; v += 500 {
					evs := make([]sierradb.NewEvent, 500)
					for i := range evs {
						evs[i] = sierradb.NewEvent{StreamID: stream, Name: "E", ExpectedVersion: sierradb.ExpectAfter(v + int64(i) - 1), Payload: payload}
					}
					if _, err := c.AppendMulti(ctx, key, evs); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			sub, err := c.SubscribePartitions(ctx, sierradb.PartitionSubscription{
				Partitions: []uint16{p}, From: map[uint16]uint64{p: from}, Window: 10_000,
			})
			if err != nil {
				b.Fatal(err)
			}
			for n := 0; n < total; n++ {
				ev, ok := <-sub.Events()
				if !ok {
					b.Fatalf("subscription ended: %v", sub.Err())
				}
				sub.Ack(ev)
			}
			sub.Close()
		}
		b.StopTimer()
		b.ReportMetric(float64(total*b.N)/time.Since(start).Seconds(), "events/s")
	})
}
