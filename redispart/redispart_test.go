package redispart_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/redispart"
)

func TestMain(m *testing.M) { os.Exit(testservice.Main(m)) }

func client(t testing.TB, addr string) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// publisher returns watermill-redisstream's publisher on a client of its
// own: its Close closes the client.
func publisher(t testing.TB, addr string) message.Publisher {
	t.Helper()
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: redis.NewClient(&redis.Options{Addr: addr})}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	return pub
}

func subscriber(t testing.TB, rdb redis.UniversalClient, cfg redispart.SubscriberConfig) *redispart.Subscriber {
	t.Helper()
	cfg.Client = rdb
	if cfg.Group == "" {
		cfg.Group = "g"
	}
	sub, err := redispart.NewSubscriber(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	return sub
}

func TestUniversal(t *testing.T) {
	addr := testservice.RequireRedis(t)
	features := tests.Features{
		ConsumerGroups:                      true,
		ExactlyOnceDelivery:                 false,
		GuaranteedOrder:                     true,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		RequireSingleInstance:               false,
		NewSubscriberReceivesOldMessages:    false,
		ContextPreserved:                    false,
		GenerateTopicFunc: func(tctx tests.TestContext) string {
			return "redispart-universal-" + string(tctx.TestID)
		},
	}
	newPubSub := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		return publisher(t, addr), subscriber(t, client(t, addr), redispart.SubscriberConfig{Group: group, BlockTime: 20 * time.Millisecond})
	}
	tests.TestPubSub(t, features,
		func(t *testing.T) (message.Publisher, message.Subscriber) { return newPubSub(t, "universal") },
		newPubSub)
}

func publishN(t *testing.T, pub message.Publisher, topic string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := pub.Publish(topic, message.NewMessage(watermill.NewUUID(), []byte(strconv.Itoa(i)))); err != nil {
			t.Fatal(err)
		}
	}
}

// next receives one message, or fails.
func next(t *testing.T, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("the subscription ended")
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10s")
	}
	return nil
}

func topicName(t *testing.T) string {
	return fmt.Sprintf("redispart-%s-%d", t.Name(), time.Now().UnixNano())
}

// A new subscription of the group starts right after the last acked
// entry: first what the previous one had read but not acked, then the
// rest, in stream order.
func TestTakeoverResumesAfterLastAck(t *testing.T) {
	addr := testservice.RequireRedis(t)
	rdb := client(t, addr)
	topic := topicName(t)
	pub := publisher(t, addr)
	publishN(t, pub, topic, 0, 10)

	old := subscriber(t, rdb, redispart.SubscriberConfig{ReadAhead: 100})
	ch, err := old.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		m := next(t, ch)
		if string(m.Payload) != strconv.Itoa(i) {
			t.Fatalf("got %s, want %d", m.Payload, i)
		}
		m.Ack()
	}
	// The fourth is delivered, not acked: the process stalls.
	stalled := next(t, ch)

	fresh := subscriber(t, client(t, addr), redispart.SubscriberConfig{})
	ch2, err := fresh.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	publishN(t, pub, topic, 10, 5)
	for i := 3; i < 15; i++ {
		m := next(t, ch2)
		if string(m.Payload) != strconv.Itoa(i) {
			t.Fatalf("after the takeover: got %s, want %d", m.Payload, i)
		}
		m.Ack()
	}
	// The stalled process wakes and acks: refused, and its subscription
	// ends without delivering more.
	stalled.Ack()
	select {
	case m, ok := <-ch:
		if ok {
			t.Fatalf("the old subscription delivered %s after its takeover", m.Payload)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the old subscription did not end")
	}
	pos, ok, err := redispart.Position(context.Background(), rdb, topic, "g")
	if err != nil || !ok || pos == "0-0" {
		t.Fatalf("position %q, %v, %v", pos, ok, err)
	}
}

// An ack from a subscription that was taken over never moves the
// position back or forward.
func TestStaleAckIsRefused(t *testing.T) {
	addr := testservice.RequireRedis(t)
	topic := topicName(t)
	pub := publisher(t, addr)
	publishN(t, pub, topic, 0, 3)
	a := subscriber(t, client(t, addr), redispart.SubscriberConfig{})
	chA, err := a.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	mA := next(t, chA)
	b := subscriber(t, client(t, addr), redispart.SubscriberConfig{})
	chB, err := b.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	mB := next(t, chB)
	if string(mB.Payload) != "0" {
		t.Fatalf("the new subscription starts at %s", mB.Payload)
	}
	mA.Ack() // refused
	if _, ok := <-chA; ok {
		t.Fatal("the stale subscription went on")
	}
	rdb := client(t, addr)
	if pos, _, _ := redispart.Position(context.Background(), rdb, topic, "g"); pos != "0-0" {
		t.Fatalf("a stale ack moved the position to %s", pos)
	}
	mB.Ack()
	if m := next(t, chB); string(m.Payload) != "1" {
		t.Fatalf("got %s, want 1", m.Payload)
	}
}

// Acked entries are trimmed, but only below every group's position.
func TestTrimWaitsForEveryGroup(t *testing.T) {
	addr := testservice.RequireRedis(t)
	rdb := client(t, addr)
	topic := topicName(t)
	pub := publisher(t, addr)
	const n = 1000
	slow := subscriber(t, rdb, redispart.SubscriberConfig{Group: "slow"})
	chSlow, err := slow.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	publishN(t, pub, topic, 0, n)
	fast := subscriber(t, rdb, redispart.SubscriberConfig{Group: "fast"})
	chFast, err := fast.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		next(t, chFast).Ack()
	}
	if l, _ := rdb.XLen(context.Background(), topic).Result(); l != n {
		t.Fatalf("%d of %d entries left while the slow group has acked none", l, n)
	}
	for i := range n {
		m := next(t, chSlow)
		if string(m.Payload) != strconv.Itoa(i) {
			t.Fatalf("slow group: got %s, want %d", m.Payload, i)
		}
		m.Ack()
	}
	// Both at the end: approximate trimming leaves less than a node.
	if l, _ := rdb.XLen(context.Background(), topic).Result(); l >= n/2 {
		t.Fatalf("%d entries left after every group acked %d", l, n)
	}
	// A group that subscribed once and went away holds trimming back
	// until it is deleted.
	if err := redispart.DeleteGroup(context.Background(), rdb, topic, "slow"); err != nil {
		t.Fatal(err)
	}
}

// Dropped connections (a Redis restart, a network cut) cost nothing: the
// subscription reads again from its position, in order.
func TestDroppedConnections(t *testing.T) {
	addr := testservice.RequireRedis(t)
	proxy, err := testservice.NewProxy(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	topic := topicName(t)
	pub := publisher(t, addr)
	sub := subscriber(t, client(t, proxy.Addr()), redispart.SubscriberConfig{BlockTime: 20 * time.Millisecond})
	ch, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	const n = 600
	var wg sync.WaitGroup
	published := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			if err := pub.Publish(topic, message.NewMessage(watermill.NewUUID(), []byte(strconv.Itoa(i)))); err != nil {
				published <- err
				return
			}
			if i%100 == 99 {
				time.Sleep(20 * time.Millisecond)
			}
		}
		published <- nil
	}()
	defer wg.Wait()
	drops := 0
	for i := 0; i < n; {
		m := next(t, ch)
		got, _ := strconv.Atoi(string(m.Payload))
		switch {
		case got == i:
			i++
		case got < i: // delivered again after a lost ack: allowed
		default:
			t.Fatalf("got %d, want %d: an entry was skipped", got, i)
		}
		m.Ack()
		if i%97 == 0 {
			drops += proxy.DropAll()
		}
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d entries in order through %d dropped connections", n, drops)
	if drops == 0 {
		t.Fatal("no connection was dropped")
	}
}
