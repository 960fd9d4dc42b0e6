package scaleout_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill/internal/proc"
	"github.com/esmill/esmill/internal/scaleout"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/lease"
)

// BenchmarkRouterProcesses measures command throughput through Redis
// Streams (redispart) on each server: a command router in the benchmark's
// own process without a lease group ("single", the baseline), and one and
// three worker processes sharing a lease group. A sender publishes b.N
// commands over 256 entities and the clock stops at the last reply.
func BenchmarkRouterProcesses(b *testing.B) {
	redisAddr := testservice.RequireRedis(b)
	servers := []struct {
		name string
		addr func(b *testing.B) string
	}{
		{"embedded-process", func(b *testing.B) string { return embeddedServer(b) }},
		{"sierradb", func(b *testing.B) string { return testservice.RequireSierraDB(b) }},
	}
	for _, srv := range servers {
		b.Run(srv.name, func(b *testing.B) {
			addr := srv.addr(b)
			for _, procs := range []int{0, 1, 3} {
				name := fmt.Sprintf("processes=%d", procs)
				if procs == 0 {
					name = "single"
				}
				b.Run(name, func(b *testing.B) { benchRouters(b, redisAddr, addr, procs) })
			}
		})
	}
}

func benchRouters(b *testing.B, redisAddr, sierraAddr string, procs int) {
	const partitions, entities = 16, 256
	run := watermill.NewShortUUID()
	cfg := scaleout.WorkerConfig{
		RedisAddr: redisAddr, SierraAddr: sierraAddr, Namespace: "bench-" + run, Group: "bench-workers",
		LeasePrefix: "bench-" + run + ":", Partitions: partitions, TTL: 2 * time.Second,
	}
	if procs == 0 {
		cfg.Exclusive = true
		ctx, cancel := context.WithCancel(context.Background())
		ready, done := make(chan struct{}), make(chan error, 1)
		c := cfg
		c.Ready = func() { close(ready) }
		go func() { done <- scaleout.RunWorker(ctx, c) }()
		defer func() { cancel(); <-done }()
		select {
		case <-ready:
		case err := <-done:
			b.Fatal(err)
		}
	} else {
		var ws []*proc.Process
		for i := range procs {
			c := cfg
			c.Instance = fmt.Sprintf("bench-%d", i)
			ws = append(ws, startWorker(b, c))
		}
		for _, w := range ws {
			waitReady(b, w)
		}
		waitGroupStable(b, redisAddr, cfg, procs)
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, PoolSize: 16})
	defer rdb.Close()
	s, err := scaleout.NewSender(rdb, cfg.Namespace, partitions, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ids := make([]string, entities)
	for i := range ids {
		ids[i] = fmt.Sprintf("b%s-%d", run, i)
	}
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if err := s.Send(ctx, ids[i%entities], i/entities+1); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for s.Replies() < b.N {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d replies", s.Replies(), b.N)
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "cmds/s")
}

// waitGroupStable waits until the group has its members and every
// partition a holder.
func waitGroupStable(b *testing.B, redisAddr string, cfg scaleout.WorkerConfig, members int) {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	store := lease.NewRedisStore(rdb, cfg.LeasePrefix)
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, live, err := store.GroupPartitions(context.Background(), cfg.Group)
		owners, _ := rdb.HLen(context.Background(), "{"+cfg.LeasePrefix+cfg.Group+"}:owners").Result()
		count, _ := rdb.ZCard(context.Background(), "{"+cfg.LeasePrefix+cfg.Group+"}:members").Result()
		if err == nil && live && n == cfg.Partitions && int(owners) == cfg.Partitions && int(count) == members {
			// Each member takes its share within two renewals of
			// seeing the others.
			time.Sleep(2 * cfg.TTL / 5 * 2)
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("group not stable: %d members, %d owned partitions", count, owners)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
