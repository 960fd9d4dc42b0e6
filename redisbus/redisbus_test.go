//go:build linux

package redisbus_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/esmill/esmill/internal/leakcheck"
	"github.com/esmill/esmill/internal/rediscluster"
	"github.com/esmill/esmill/redisbus"
)

func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m)) }

func newClient(t *testing.T, c *rediscluster.Cluster) *redis.ClusterClient {
	rdb := redisbus.NewClusterClient(&redis.ClusterOptions{
		Addrs:                    c.Addrs(),
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// TestDurablePublisherSurvivesFailover publishes to a topic from 4
// goroutines through a DurablePublisher while the topic's master is
// SIGKILLed, and checks that every message whose Publish returned nil is
// in the stream after the failover; and that the client built by
// NewClusterClient finds the promoted replica without a manual reload.
// Each master has two replicas: after the failover the promoted one still
// has a replica to WAIT for (with one replica per master, durable
// publishing stops until the old master is back as a replica).
func TestDurablePublisherSurvivesFailover(t *testing.T) {
	c := rediscluster.Start(t, rediscluster.Config{ReplicasPerMaster: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rdb := newClient(t, c)
	inner, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := redisbus.NewDurablePublisher(inner, redisbus.DurableConfig{Client: rdb})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	topic := "durable-" + watermill.NewShortUUID()
	var mu sync.Mutex
	acked := map[string]bool{}
	var okTimes []time.Time
	failed := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				msg := message.NewMessage(fmt.Sprintf("m-%d-%d", g, k), []byte("x"))
				mctx, mcancel := context.WithTimeout(ctx, 5*time.Second)
				msg.SetContext(mctx)
				err := pub.Publish(topic, msg)
				mcancel()
				mu.Lock()
				if err == nil {
					acked[msg.UUID] = true
					okTimes = append(okTimes, time.Now())
				} else {
					failed++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(okTimes)
	}
	waitFor := func(n int) {
		deadline := time.Now().Add(time.Minute)
		for count() < n {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("only %d publishes acknowledged", count())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(200)
	victim, err := c.MasterFor(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	took, err := c.KillMaster(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	before := count()
	waitFor(before + 200)
	close(stop)
	wg.Wait()
	mu.Lock()
	prev, gap := killedAt, time.Duration(0)
	for _, at := range okTimes {
		if at.After(killedAt) {
			gap = max(gap, at.Sub(prev))
			prev = at
		}
	}
	mu.Unlock()
	t.Logf("master of the topic SIGKILLed: replica promoted after %s; longest time without an acknowledged publish after the kill: %s; %d publishes acknowledged, %d failed",
		took.Round(time.Millisecond), gap.Round(time.Millisecond), len(acked), failed)
	stored := map[string]bool{}
	msgs, err := rdb.XRange(ctx, topic, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if id, ok := m.Values["_watermill_message_uuid"].(string); ok {
			stored[id] = true
		}
	}
	lost := 0
	for id := range acked {
		if !stored[id] {
			lost++
		}
	}
	t.Logf("after the failover the stream holds %d messages: %d acknowledged publishes lost", len(msgs), lost)
	if lost != 0 {
		t.Errorf("%d acknowledged publishes lost", lost)
	}
}

func TestDurableConfigValidate(t *testing.T) {
	if _, err := redisbus.NewDurablePublisher(nil, redisbus.DurableConfig{}); err == nil {
		t.Error("nil publisher accepted")
	}
	err := redisbus.DurableConfig{Replicas: -1, Timeout: -1}.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"Client is required", "Replicas", "Timeout"} {
		if !contains(err.Error(), want) {
			t.Errorf("%q does not mention %q", err, want)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
