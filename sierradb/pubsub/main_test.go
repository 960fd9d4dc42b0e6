package pubsub_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill/internal/leakcheck"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/sierradb/pubsub"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		os.Exit(crashChild())
	}
	os.Exit(testservice.Main(m,
		// Watermill's universal suite (TestUniversal) reads through its
		// internal multiplier, whose forwarding goroutine blocks for ever
		// sending a message that the suite no longer reads, after the
		// suite closed our subscriber; neither side can stop it. Only the
		// multiplier's two goroutines are ignored.
		leakcheck.IgnoreAnyFunction("github.com/ThreeDotsLabs/watermill/internal/subscriber.(*multiplier).Subscribe.func2"),
		leakcheck.IgnoreAnyFunction("github.com/ThreeDotsLabs/watermill/internal/subscriber.(*multiplier).Subscribe.func3"),
	))
}

// server is a SierraDB the tests run against.
type server struct {
	name string
	// real is true for the real SierraDB, which confirms appends
	// asynchronously and is slower per append.
	real bool
	addr func(t testing.TB) string
}

// servers are the embedded server (always) and the real SierraDB 0.3.1
// (skipped without the binary, required under CI=true).
var servers = []server{
	{"embedded", false, func(t testing.TB) string { return embedded.RunT(t).Addr() }},
	{"sierradb", true, func(t testing.TB) string { return testservice.RequireSierraDB(t) }},
}

// eachServer runs f against every server with a client of its own.
func eachServer(t *testing.T, f func(t *testing.T, srv server, c *sierradb.Client)) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			f(t, srv, newClient(t, srv.addr(t)))
		})
	}
}

func newClient(t testing.TB, addr string) *sierradb.Client {
	t.Helper()
	c, err := sierradb.New(sierradb.Config{
		Addr: addr, PoolSize: 64,
		ReconnectMinBackoff: 10 * time.Millisecond, ReconnectMaxBackoff: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newPublisher(t testing.TB, cfg pubsub.PublisherConfig) *pubsub.Publisher {
	t.Helper()
	p, err := pubsub.NewPublisher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func newSubscriber(t testing.TB, cfg pubsub.SubscriberConfig) *pubsub.Subscriber {
	t.Helper()
	s, err := pubsub.NewSubscriber(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// subscribe subscribes s to topic, failing the test if it cannot: a nil
// channel would only show as no message.
func subscribe(t testing.TB, s *pubsub.Subscriber, topic string) <-chan *message.Message {
	t.Helper()
	ch, err := s.Subscribe(ctxT(t), topic)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", topic, err)
	}
	return ch
}

var uniq atomic.Int64

// streamName returns a stream id no other test uses, also across runs
// against a shared real server.
func streamName(category string) string {
	return fmt.Sprintf("%s-%d-%d", category, time.Now().UnixNano()%1e9, uniq.Add(1))
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// receive reads one message, failing t after a timeout.
func receive(t testing.TB, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case msg, ok := <-ch:
		if !ok {
			t.Fatal("output channel closed")
		}
		return msg
	case <-time.After(20 * time.Second):
		t.Fatal("no message within 20s")
	}
	return nil
}

// receiveAck reads n messages and acks each.
func receiveAck(t testing.TB, ch <-chan *message.Message, n int) []*message.Message {
	t.Helper()
	out := make([]*message.Message, 0, n)
	for range n {
		msg := receive(t, ch)
		msg.Ack()
		out = append(out, msg)
	}
	return out
}

// noMessage checks that nothing arrives for a short while.
func noMessage(t testing.TB, ch <-chan *message.Message, d time.Duration) {
	t.Helper()
	select {
	case msg, ok := <-ch:
		if ok {
			t.Fatalf("unexpected message %s (%s)", msg.UUID, msg.Payload)
		}
	case <-time.After(d):
	}
}

// eventually polls f until it returns nil, failing t after 20 s with the
// last error.
func eventually(t testing.TB, f func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// closed waits until ch is closed, acking whatever still arrives.
func closed(t testing.TB, ch <-chan *message.Message) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case msg, ok := <-ch:
			if !ok {
				return
			}
			msg.Ack()
		case <-timeout:
			t.Fatal("output channel not closed within 20s")
		}
	}
}
