//go:build linux

package clustertest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esmill/esmill/internal/sierracluster"
	"github.com/esmill/esmill/sierradb"
)

// BenchmarkCluster compares a 3-node SierraDB cluster (RF 3, through the
// cluster-aware client) with one node (through the single-server client),
// both started by the harness the same way, in the same run: appends from
// 16 goroutines, and a catch-up subscription over every partition.
// cmd/esbench reports the ratios.
func BenchmarkCluster(b *testing.B) {
	targets := []struct {
		name  string
		nodes int
	}{{"nodes=1", 1}, {"nodes=3", 3}}
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			c := sierracluster.Start(b, sierracluster.Config{Nodes: tg.nodes})
			cfg := sierradb.Config{PoolSize: 64}
			if tg.nodes == 1 {
				cfg.Addr = c.Node(0).Addr()
			} else {
				cfg.Cluster = c.ClientConfig()
			}
			client, err := sierradb.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer client.Close()
			b.Run("append/goroutines=16", func(b *testing.B) { benchAppend(b, client, 16) })
			b.Run("catchup", func(b *testing.B) { benchCatchUp(b, client) })
		})
	}
}

func benchAppend(b *testing.B, client *sierradb.Client, goroutines int) {
	ctx := context.Background()
	prefix := fmt.Sprintf("ba%d", time.Now().UnixNano()%1e9)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	b.ResetTimer()
	start := time.Now()
	for g := range goroutines {
		wg.Go(func() {
			stream := fmt.Sprintf("%s-%d", prefix, g)
			v := int64(-1)
			for next.Add(1) <= int64(b.N) {
				if _, err := client.Append(ctx, sierradb.NewEvent{StreamID: stream, Name: "E", ExpectedVersion: sierradb.ExpectAfter(v), Payload: []byte("0123456789")}); err != nil {
					errs <- err
					return
				}
				v++
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// benchCatchUp seeds 20,000 events over 16 streams (so over most
// partitions) and subscribes to every partition from before them.
func benchCatchUp(b *testing.B, client *sierradb.Client) {
	const streams, perStream, batch = 16, 1250, 250
	const total = streams * perStream
	ctx := context.Background()
	count, err := client.PartitionCount(ctx)
	if err != nil {
		b.Fatal(err)
	}
	parts := make([]uint16, count)
	for i := range parts {
		parts[i] = uint16(i)
	}
	heads, err := client.PartitionSequences(ctx, parts)
	if err != nil {
		b.Fatal(err)
	}
	from := map[uint16]uint64{}
	for p, h := range heads {
		from[p] = uint64(h + 1)
	}
	prefix := fmt.Sprintf("bc%d", time.Now().UnixNano()%1e9)
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for s := range streams {
		wg.Go(func() {
			stream := fmt.Sprintf("%s-%d", prefix, s)
			key := sierradb.StreamPartitionKey(stream)
			for v := int64(0); v < perStream; v += batch {
				evs := make([]sierradb.NewEvent, batch)
				for i := range evs {
					evs[i] = sierradb.NewEvent{StreamID: stream, Name: "E", ExpectedVersion: sierradb.ExpectAfter(v + int64(i) - 1), Payload: []byte("0123456789")}
				}
				if _, err := client.AppendMulti(ctx, key, evs); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		sub, err := client.SubscribePartitions(ctx, sierradb.PartitionSubscription{From: from, Window: 10_000})
		if err != nil {
			b.Fatal(err)
		}
		for n := 0; n < total; n++ {
			select {
			case ev, ok := <-sub.Events():
				if !ok {
					b.Fatalf("subscription ended: %v", sub.Err())
				}
				sub.Ack(ev)
			case <-time.After(time.Minute):
				b.Fatalf("catch-up stalled after %d of %d events", n, total)
			}
		}
		sub.Close()
	}
	b.StopTimer()
	b.ReportMetric(float64(total*b.N)/time.Since(start).Seconds(), "events/s")
}
