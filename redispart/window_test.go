package redispart_test

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/redispart"
)

// keyOf is the OrderKey of the window tests: the "k" metadata.
func keyOf(m *message.Message) string { return m.Metadata.Get("k") }

// publishKeyed publishes n messages, the i-th with key "k<i%keys>" and
// payload "<key>:<i>", and returns each key's payloads in order.
func publishKeyed(t *testing.T, pub message.Publisher, topic string, n, keys int) map[string][]string {
	t.Helper()
	want := make(map[string][]string)
	for i := range n {
		k := "k" + strconv.Itoa(i%keys)
		m := message.NewMessage(watermill.NewUUID(), []byte(k+":"+strconv.Itoa(i)))
		m.Metadata.Set("k", k)
		if err := pub.Publish(topic, m); err != nil {
			t.Fatal(err)
		}
		want[k] = append(want[k], string(m.Payload))
	}
	return want
}

// With MaxInFlight above 1, messages of different keys are handled side
// by side and those of one key one at a time, in stream order; the
// position ends on the last entry.
func TestWindowKeepsEachKeyInOrder(t *testing.T) {
	addr := testservice.RequireRedis(t)
	rdb := client(t, addr)
	topic := topicName(t)
	const n, keys, window = 400, 16, 8
	want := publishKeyed(t, publisher(t, addr), topic, n, keys)
	sub := subscriber(t, rdb, redispart.SubscriberConfig{MaxInFlight: window, OrderKey: keyOf, BlockTime: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu        sync.Mutex
		got       = make(map[string][]string)
		busy      = make(map[string]bool)
		inFlight  atomic.Int32
		most      atomic.Int32
		overlaps  []string
		wg        sync.WaitGroup
		delivered int
	)
	for delivered < n {
		m := next(t, ch)
		delivered++
		wg.Add(1)
		// As Watermill's router does: each message in its own goroutine.
		go func() {
			defer wg.Done()
			k := keyOf(m)
			mu.Lock()
			if busy[k] {
				overlaps = append(overlaps, string(m.Payload))
			}
			busy[k] = true
			mu.Unlock()
			now := inFlight.Add(1)
			for {
				old := most.Load()
				if now <= old || most.CompareAndSwap(old, now) {
					break
				}
			}
			time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
			inFlight.Add(-1)
			mu.Lock()
			busy[k] = false
			got[k] = append(got[k], string(m.Payload))
			mu.Unlock()
			m.Ack()
		}()
	}
	wg.Wait()
	if len(overlaps) > 0 {
		t.Errorf("%d messages were handed over while another of their key was in flight, first %s", len(overlaps), overlaps[0])
	}
	for k, w := range want {
		if strings.Join(got[k], " ") != strings.Join(w, " ") {
			t.Errorf("key %s: got %v, want %v", k, got[k], w)
		}
	}
	if m := most.Load(); m < 2 || m > window {
		t.Errorf("at most %d messages were in flight together, want 2..%d", m, window)
	}
	last, err := rdb.XRevRangeN(ctx, topic, "+", "-", 1).Result()
	if err != nil || len(last) != 1 {
		t.Fatal(last, err)
	}
	waitPosition(t, rdb, topic, "g", last[0].ID)
	t.Logf("%d messages over %d keys; at most %d in flight together", n, keys, most.Load())
}

// waitPosition waits until the group's recorded position on topic is id.
func waitPosition(t *testing.T, rdb redis.UniversalClient, topic, group, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pos, _, err := redispart.Position(context.Background(), rdb, topic, group)
		if err == nil && pos == id {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("position %q (%v), want %s once every entry is acked", pos, err, id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The position moves only over acked entries with nothing unacked before
// them: entries acked after an unacked one are delivered again to the
// next subscription, after the unacked one, in stream order.
func TestWindowPositionStopsAtFirstUnacked(t *testing.T) {
	addr := testservice.RequireRedis(t)
	rdb := client(t, addr)
	topic := topicName(t)
	publishKeyed(t, publisher(t, addr), topic, 4, 4) // k0:0 k1:1 k2:2 k3:3
	cfg := redispart.SubscriberConfig{MaxInFlight: 4, OrderKey: keyOf, BlockTime: 10 * time.Millisecond}
	first := subscriber(t, rdb, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := first.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var held *message.Message
	for range 4 {
		m := next(t, ch) // all four are in flight together: no ack yet
		if string(m.Payload) == "k0:0" {
			held = m
			continue
		}
		m.Ack()
	}
	if held == nil {
		t.Fatal("k0:0 was not delivered")
	}
	// Three acks arrived, but not the first entry's: the position stays.
	time.Sleep(100 * time.Millisecond)
	if pos, _, err := redispart.Position(ctx, rdb, topic, "g"); err != nil || pos != "0-0" {
		t.Fatalf("position %q (%v) with the first entry unacked, want 0-0", pos, err)
	}
	cancel()
	first.Close()

	second := subscriber(t, rdb, cfg)
	ch2, err := second.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var again []string
	for range 4 {
		m := next(t, ch2)
		again = append(again, string(m.Payload))
		m.Ack()
	}
	// All four are handed over at once; they come in stream order.
	if strings.Join(again, " ") != "k0:0 k1:1 k2:2 k3:3" {
		t.Errorf("the next subscription delivered %v, want every entry again in stream order", again)
	}
	last, err := rdb.XRevRangeN(context.Background(), topic, "+", "-", 1).Result()
	if err != nil || len(last) != 1 {
		t.Fatal(last, err)
	}
	waitPosition(t, rdb, topic, "g", last[0].ID)
}

// A nacked message comes again before the later messages of its key;
// the other keys go on meanwhile.
func TestWindowNackKeepsKeyOrder(t *testing.T) {
	addr := testservice.RequireRedis(t)
	rdb := client(t, addr)
	topic := topicName(t)
	// k0:0 k1:1 k0:2 k1:3
	publishKeyed(t, publisher(t, addr), topic, 4, 2)
	sub := subscriber(t, rdb, redispart.SubscriberConfig{MaxInFlight: 4, OrderKey: keyOf, BlockTime: 10 * time.Millisecond,
		NackResendSleep: 200 * time.Millisecond})
	ch, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	nacked := false
	for len(order) < 4 {
		m := next(t, ch)
		if string(m.Payload) == "k0:0" && !nacked {
			nacked = true
			m.Nack()
			continue
		}
		order = append(order, string(m.Payload))
		m.Ack()
	}
	// k1 goes on while k0:0 waits out its resend sleep; k0:2 only after
	// k0:0.
	if strings.Join(order, " ") != "k1:1 k1:3 k0:0 k0:2" {
		t.Errorf("order %v, want k1:1 k1:3 k0:0 k0:2", order)
	}
}

func TestWindowNeedsOrderKey(t *testing.T) {
	_, err := redispart.NewSubscriber(redispart.SubscriberConfig{Client: client(t, "127.0.0.1:1"), Group: "g", MaxInFlight: 4})
	if err == nil || !strings.Contains(err.Error(), "needs OrderKey") {
		t.Fatalf("MaxInFlight without OrderKey: %v, want an error that asks for OrderKey", err)
	}
}

// Watermill's universal suite with a window of 8 and one key for every
// message: the window's delivery, nack and close paths, in stream order.
func TestUniversalWindowed(t *testing.T) {
	addr := testservice.RequireRedis(t)
	features := tests.Features{
		ConsumerGroups:                      true,
		GuaranteedOrder:                     true,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		GenerateTopicFunc: func(tctx tests.TestContext) string {
			return "redispart-universal-window-" + string(tctx.TestID)
		},
	}
	one := func(*message.Message) string { return "" }
	newPubSub := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		return publisher(t, addr), subscriber(t, client(t, addr), redispart.SubscriberConfig{Group: group, BlockTime: 20 * time.Millisecond,
			MaxInFlight: 8, OrderKey: one})
	}
	tests.TestPubSub(t, features,
		func(t *testing.T) (message.Publisher, message.Subscriber) { return newPubSub(t, "universal") },
		newPubSub)
}
