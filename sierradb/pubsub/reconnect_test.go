package pubsub_test

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/pubsub"
)

// TestReconnect cuts every connection to the server again and again, spread
// over the whole run (every dropEvery-th received message, once the
// subscription has delivered an event published after the previous cut, so
// that every cut finds it connected), while messages are published and
// consumed (the universal suite's reconnect test needs a
// command that restarts the server, which neither server here offers).
//
// Publishing is at least once: a call whose connection drops returns an
// error and is sent again, so a message may be stored twice, as two events
// (two event ids) right after each other. Consuming loses nothing and
// duplicates nothing: the subscription resumes after the last delivered
// event, so no event id is delivered twice, every payload arrives in
// order, and every cut is counted (the client logs one lost subscription
// connection per cut).
//
// The publisher runs in a goroutine that reports through a channel and is
// joined before the test returns; it calls nothing on t.
func TestReconnect(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			proxy, err := testservice.NewProxy(srv.addr(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(proxy.Close)
			lost := &testservice.LogCounter{Match: "subscription connection lost"}
			c, err := sierradb.New(sierradb.Config{
				Addr: proxy.Addr(), PoolSize: 64, Logger: slog.New(lost),
				ReconnectMinBackoff: 10 * time.Millisecond, ReconnectMaxBackoff: 200 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			pub := newPublisher(t, pubsub.PublisherConfig{Client: c})
			sub := newSubscriber(t, pubsub.SubscriberConfig{Client: c})
			stream := streamName("reconnect")
			ch, err := sub.Subscribe(ctxT(t), stream)
			if err != nil {
				t.Fatal(err)
			}

			total, dropEvery := 300, 25
			if srv.real {
				total, dropEvery = 120, 10 // appends take about 30 ms there
			}
			// The publisher stays at most ahead payloads ahead of the
			// consumer (credits), so that cuts come at a steady pace.
			const ahead = 10
			credits := make(chan struct{}, ahead)
			for range ahead {
				credits <- struct{}{}
			}
			var started atomic.Int64 // payloads whose first Publish began
			stop := make(chan struct{})
			var failures atomic.Int64
			pubErr := make(chan error, 1)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range total {
					select {
					case <-credits:
					case <-stop:
						return
					}
					started.Store(int64(i + 1))
					msg := message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprint(i)))
					for {
						err := pub.Publish(stream, msg)
						if err == nil {
							break
						}
						if failures.Add(1) > int64(total) {
							pubErr <- fmt.Errorf("publish keeps failing: %w", err)
							return
						}
						select {
						case <-stop:
							return
						case <-time.After(5 * time.Millisecond):
						}
					}
				}
			}()
			defer func() {
				close(stop)
				wg.Wait()
			}()

			// Every payload arrives, in order; a payload stored twice by
			// a retried call comes right after its first copy, as another
			// event. No event is delivered twice.
			seen := map[string]bool{}
			next, storedTwice, drops := 0, 0, 0
			sinceCut, cutMark := 0, 0 // payloads from cutMark on were published after the last cut
			for next < total {
				var msg *message.Message
				select {
				case err := <-pubErr:
					t.Fatal(err)
				case msg = <-ch:
				case <-time.After(20 * time.Second):
					t.Fatalf("no message within 20 s; %d of %d payloads received", next, total)
				}
				if msg == nil {
					t.Fatalf("output channel closed after %d of %d payloads", next, total)
				}
				msg.Ack()
				id := msg.Metadata.Get(esmill.MetaEventID)
				if id == "" || seen[id] {
					t.Fatalf("event %q (payload %s) delivered twice", id, msg.Payload)
				}
				seen[id] = true
				var n int
				fmt.Sscan(string(msg.Payload), &n)
				switch {
				case n == next:
					next++
					credits <- struct{}{}
				case n == next-1: // stored twice by a retried Publish
					storedTwice++
				default:
					t.Fatalf("received %d after %d", n, next-1)
				}
				sinceCut++
				if sinceCut >= dropEvery && n >= cutMark && next < total {
					cutMark = int(started.Load())
					if proxy.DropAll() == 0 {
						t.Fatalf("cut %d found no connection", drops+1)
					}
					drops++
					sinceCut = 0
				}
			}
			if want := total/dropEvery - 1; drops < want {
				t.Errorf("%d cuts, want at least %d", drops, want)
			}
			// Each cut ends the subscription's connection once; the last
			// cut's reconnection may still be under way.
			deadline := time.Now().Add(20 * time.Second)
			for lost.Count() < int64(drops) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := lost.Count(); n != int64(drops) {
				t.Errorf("%d cuts, but the subscription lost its connection %d times", drops, n)
			}
			if storedTwice > int(failures.Load()) {
				t.Errorf("%d payloads stored twice with only %d failed publish calls", storedTwice, failures.Load())
			}
			t.Logf("%d messages, %d connection cuts, %d failed publish calls, %d payloads stored twice, 0 events delivered twice",
				total, drops, failures.Load(), storedTwice)
		})
	}
}
