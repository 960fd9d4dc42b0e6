//go:build linux

package rediscluster

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

func clusterClient(t *testing.T, c *Cluster) *redis.ClusterClient {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                    c.Addrs(),
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestSlot checks the hash slot against values Redis itself computes.
func TestSlot(t *testing.T) {
	c := Start(t, Config{Masters: 3, NoReplicas: true})
	ctx := testCtx(t, 30*time.Second)
	for _, key := range []string{"", "a", "foo", "{user1}.following", "{}x", "x{y}z", "esmill:cmd:orders-3"} {
		out, err := Do(ctx, c.Nodes()[0].Addr, "CLUSTER", "KEYSLOT", key)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := strconv.Atoi(out[1:]); Slot(key) != want {
			t.Errorf("Slot(%q) = %d, Redis says %d", key, Slot(key), want)
		}
	}
}

// TestClusterClient starts 3 masters with a replica each and writes and
// reads keys spread over every master through go-redis's ClusterClient.
func TestClusterClient(t *testing.T) {
	c := Start(t, Config{})
	ctx := testCtx(t, time.Minute)
	if len(c.Nodes()) != 6 {
		t.Fatalf("%d nodes, want 6", len(c.Nodes()))
	}
	masters, err := c.Masters(ctx)
	if err != nil || len(masters) != 3 {
		t.Fatalf("masters %v %v", masters, err)
	}
	rdb := clusterClient(t, c)
	served := map[string]int{}
	for i := range 300 {
		key := fmt.Sprintf("k%d", i)
		if err := rdb.Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatal(err)
		}
		m, err := c.MasterFor(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		served[m.Addr]++
	}
	if len(served) != 3 {
		t.Errorf("keys landed on %d masters, want 3: %v", len(served), served)
	}
	for i := range 300 {
		if v, err := rdb.Get(ctx, fmt.Sprintf("k%d", i)).Int(); err != nil || v != i {
			t.Fatalf("k%d = %d %v", i, v, err)
		}
	}
	// Multi-key commands need one slot: a hash tag puts keys there.
	if err := rdb.MSet(ctx, "{acct}a", 1, "{acct}b", 2).Err(); err != nil {
		t.Fatalf("MSET with one hash tag: %v", err)
	}
	if err := rdb.Do(ctx, "MSET", "x1", 1, "y2", 2).Err(); err == nil || Slot("x1") == Slot("y2") {
		t.Errorf("MSET across slots: %v", err)
	}
	t.Logf("300 keys over masters %v", served)
}

// TestKillMasterPromotesReplica SIGKILLs the master of a key after its
// writes reached the replica (WAIT), waits for the promotion, reads every
// key back through the ClusterClient, starts the old master again and
// checks that it came back as a replica.
func TestKillMasterPromotesReplica(t *testing.T) {
	c := Start(t, Config{})
	ctx := testCtx(t, 2*time.Minute)
	rdb := clusterClient(t, c)
	for i := range 200 {
		if err := rdb.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	victim, err := c.MasterFor(ctx, "k0")
	if err != nil {
		t.Fatal(err)
	}
	// Redis replicates asynchronously: WAIT makes sure the replica has
	// every write before the master dies.
	if n, err := Do(ctx, victim.Addr, "WAIT", "1", "5000"); err != nil || n != ":1" {
		t.Fatalf("WAIT on %s: %q %v", victim.Addr, n, err)
	}
	took, err := c.KillMaster(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("master %s SIGKILLed: replica promoted and cluster_state ok after %s (cluster-node-timeout %s)", victim.Addr, took.Round(time.Millisecond), c.cfg.NodeTimeout)
	now, err := c.MasterFor(ctx, "k0")
	if err != nil || now == victim {
		t.Fatalf("k0 served by %v after the failover (%v)", now, err)
	}
	// go-redis (v9.23) does not reload its slot map on a connection error,
	// only on MOVED/ASK or when the map is older than
	// ClusterStateReloadInterval (default 60 s): the client that knew the
	// old master keeps failing on its keys ...
	if err := rdb.Get(ctx, "k0").Err(); err == nil {
		t.Error("the default ClusterClient read the failed-over key at once: go-redis now reloads on connection errors")
	} else {
		t.Logf("default ClusterClient right after the failover: %v", err)
	}
	// ... until ReloadState (which reloads in the background).
	rdb.ReloadState(ctx)
	start := time.Now()
	for rdb.Get(ctx, "k0").Err() != nil {
		if time.Since(start) > 10*time.Second {
			t.Fatal("k0 still unreadable 10 s after ReloadState")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("after ReloadState the ClusterClient read k0 in %s", time.Since(start).Round(time.Millisecond))
	for i := range 200 {
		if v, err := rdb.Get(ctx, fmt.Sprintf("k%d", i)).Int(); err != nil || v != i {
			t.Fatalf("after failover and ReloadState k%d = %d %v", i, v, err)
		}
	}
	if err := victim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	role, err := Do(ctx, victim.Addr, "INFO", "replication")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(role, "role:slave") {
		t.Errorf("old master came back as:\n%s", role)
	}
}

// TestRedisStreamOnCluster publishes to and consumes from several topics
// (each a stream key, so on its own slot) with watermill-redisstream over
// a ClusterClient, with a consumer group per topic, and counts every
// message exactly once.
func TestRedisStreamOnCluster(t *testing.T) {
	c := Start(t, Config{})
	ctx := testCtx(t, 2*time.Minute)
	rdb := clusterClient(t, c)
	var client redis.UniversalClient = rdb
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: client, ConsumerGroup: "esmill-test",
		BlockTime: 10 * time.Millisecond, OldestId: "0"}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	topics := []string{"orders", "payments", "{tenant-7}commands"}
	slots := map[int]bool{}
	for _, tp := range topics {
		m, err := c.MasterFor(ctx, tp)
		if err != nil {
			t.Fatal(err)
		}
		slots[Slot(tp)] = true
		t.Logf("topic %q: slot %d on %s", tp, Slot(tp), m.Addr)
	}
	const per = 100
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	for _, tp := range topics {
		msgs, err := sub.Subscribe(sctx, tp)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range msgs {
				mu.Lock()
				seen[m.UUID]++
				mu.Unlock()
				m.Ack()
			}
		}()
	}
	for i := range per {
		for _, tp := range topics {
			msg := message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprintf("%s-%d", tp, i)))
			if err := pub.Publish(tp, msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == per*len(topics) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	sub.Close()
	wg.Wait()
	dups := 0
	for _, k := range seen {
		if k > 1 {
			dups++
		}
	}
	if len(seen) != per*len(topics) || dups != 0 {
		t.Fatalf("received %d distinct of %d, %d more than once", len(seen), per*len(topics), dups)
	}
	t.Logf("%d messages over %d topics on %d slots, each received once", len(seen), len(topics), len(slots))
}
