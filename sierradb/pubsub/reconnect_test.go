package pubsub_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb/pubsub"
)

// TestReconnect cuts every connection to the server several times while
// messages are published and consumed (the universal suite's reconnect test
// needs a command that restarts the server, which neither server here
// offers). Publishing is at least once: a call whose connection drops
// returns an error and is sent again, so a message may be stored twice.
// Consuming loses nothing: the subscription resumes where it was.
func TestReconnect(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			proxy, err := testservice.NewProxy(srv.addr(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(proxy.Close)
			c := newClient(t, proxy.Addr())
			pub := newPublisher(t, pubsub.PublisherConfig{Client: c})
			sub := newSubscriber(t, pubsub.SubscriberConfig{Client: c})
			stream := streamName("reconnect")
			ch, err := sub.Subscribe(ctxT(t), stream)
			if err != nil {
				t.Fatal(err)
			}

			total := 300
			if srv.real {
				total = 100 // appends take longer there
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			failures := 0
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range total {
					msg := message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprint(i)))
					for {
						err := pub.Publish(stream, msg)
						if err == nil {
							break
						}
						mu.Lock()
						failures++
						f := failures
						mu.Unlock()
						if f > total {
							t.Errorf("publish keeps failing: %v", err)
							return
						}
						time.Sleep(5 * time.Millisecond)
					}
					time.Sleep(2 * time.Millisecond)
				}
			}()
			stop := make(chan struct{})
			wg.Add(1)
			drops := 0
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
						if proxy.DropAll() > 0 {
							drops++
						}
					}
				}
			}()

			// Every payload arrives, in order; a payload stored twice by
			// a retried call comes right after its first copy.
			next := 0
			for next < total {
				msg := receive(t, ch)
				msg.Ack()
				var n int
				fmt.Sscan(string(msg.Payload), &n)
				switch {
				case n == next:
					next++
				case n == next-1: // stored twice by a retried Publish
				default:
					t.Fatalf("received %d after %d", n, next-1)
				}
			}
			close(stop)
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			t.Logf("%d connection cuts, %d failed publish calls", drops, failures)
			if drops < 3 {
				t.Errorf("only %d cuts", drops)
			}
		})
	}
}
