package scaleout_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/internal/proc"
	"github.com/esmill/esmill/internal/scaleout"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/lease"
	"github.com/esmill/esmill/sierradb"
)

// report appends a line to $ESMILL_REPORT_DIR/scaleout.txt, which CI
// prints after the tests.
func report(t *testing.T, line string) {
	dir := os.Getenv("ESMILL_REPORT_DIR")
	if dir == "" {
		return
	}
	f, err := os.OpenFile(filepath.Join(dir, "scaleout.txt"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("report: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}

// envInt reads a positive integer from the environment, or def.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// Three worker processes share a lease group and a sender sends 10,000
// numbered commands over 500 entities, in order per entity, while the
// workers are SIGKILLed and restarted at random every few seconds, one of
// them joining late. Every command must be applied once, in order, and
// none rejected: the test prints the counts. It runs against the real
// SierraDB and against the embedded server as a process of its own.
//
// ESMILL_CHAOS_ENTITIES, ESMILL_CHAOS_COMMANDS (per entity) and
// ESMILL_CHAOS_SECONDS (how long the sending and the chaos last) make a
// larger run. ESMILL_CHAOS_SHARED_GROUP=1 runs the workers as they were
// set up before partition ownership (one watermill-redisstream consumer
// group, no leases), to see the test fail.
func TestChaosOwnership(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes for a minute")
	}
	redisAddr := testservice.RequireRedis(t)
	servers := []struct {
		name string
		addr func(t *testing.T) string
	}{
		{"sierradb", func(t *testing.T) string { return testservice.RequireSierraDB(t) }},
		{"embedded-process", func(t *testing.T) string { return embeddedServer(t) }},
	}
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) { chaosRun(t, redisAddr, srv.addr(t)) })
	}
}

func chaosRun(t *testing.T, redisAddr, sierraAddr string) {
	entities := envInt("ESMILL_CHAOS_ENTITIES", 500)
	perEntity := envInt("ESMILL_CHAOS_COMMANDS", 20)
	sending := time.Duration(envInt("ESMILL_CHAOS_SECONDS", 30)) * time.Second
	const partitions = 32
	run := watermill.NewShortUUID()
	cfg := scaleout.WorkerConfig{
		RedisAddr: redisAddr, SierraAddr: sierraAddr, Namespace: "chaos-" + run, Group: "chaos-workers",
		LeasePrefix: "chaos-" + run + ":", Partitions: partitions, TTL: time.Second,
		SharedGroup: os.Getenv("ESMILL_CHAOS_SHARED_GROUP") == "1",
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	started, kills := 0, 0
	start := func() *proc.Process {
		started++
		c := cfg
		c.Instance = fmt.Sprintf("worker-%d", started)
		return startWorker(t, c)
	}
	workers := []*proc.Process{start(), start()}
	for _, w := range workers {
		waitReady(t, w)
	}

	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, PoolSize: 32})
	defer rdb.Close()
	var group *cqrs.Ownership
	if !cfg.SharedGroup {
		group = &cqrs.Ownership{Store: lease.NewRedisStore(rdb, cfg.LeasePrefix), Group: cfg.Group}
	}
	sender, err := scaleout.NewSender(rdb, cfg.Namespace, partitions, group)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	ids := make([]string, entities)
	for i := range ids {
		ids[i] = fmt.Sprintf("e%s-%d", run, i)
	}

	// The sender: round k sends command k to every entity, rounds spread
	// over the sending time.
	ctx, cancel := context.WithTimeout(context.Background(), sending+5*time.Minute)
	defer cancel()
	sent := make(chan error, 1)
	go func() {
		begin := time.Now()
		for seq := 1; seq <= perEntity; seq++ {
			for _, id := range ids {
				if err := sender.Send(ctx, id, seq); err != nil {
					sent <- fmt.Errorf("send %s #%d: %w", id, seq, err)
					return
				}
			}
			due := begin.Add(sending * time.Duration(seq) / time.Duration(perEntity))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					sent <- ctx.Err()
					return
				}
			}
		}
		sent <- nil
	}()

	// The chaos: a third worker joins late; then, every one to three
	// seconds, a random worker is SIGKILLed and started again.
	lateAt := time.Now().Add(sending / 6)
	var sendErr error
chaos:
	for {
		select {
		case sendErr = <-sent:
			break chaos
		case <-time.After(time.Duration(1000+rng.IntN(2000)) * time.Millisecond):
		}
		if len(workers) < 3 {
			if time.Now().After(lateAt) {
				workers = append(workers, start())
			}
			continue
		}
		i := rng.IntN(len(workers))
		workers[i].Kill()
		kills++
		workers[i] = start()
	}
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	// Let the group settle and finish.
	total := entities * perEntity
	deadline := time.Now().Add(3 * time.Minute)
	for sender.Replies() < total && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	replies := sender.Replies()
	for _, w := range workers {
		w.Stop(15 * time.Second)
	}

	client, err := sierradb.New(sierradb.Config{Addr: sierraAddr})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	counts, err := scaleout.Verify(ctx, client, sender, ids, perEntity)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d worker processes started, %d SIGKILLed, one joining late; %d replies", started, kills, replies)
	t.Logf("%s", counts)
	report(t, fmt.Sprintf("scale-out chaos (%s): %d worker processes started, %d SIGKILLed, one joining late; %s", t.Name(), started, kills, counts))
	if !counts.Clean() || counts.Applied != total {
		for _, w := range workers {
			t.Logf("a worker's log:\n%s", w.LogTail(3000))
		}
		t.Fatalf("want every command applied once, in order, and none rejected")
	}
	if kills == 0 {
		t.Fatal("the chaos killed nothing")
	}
}
