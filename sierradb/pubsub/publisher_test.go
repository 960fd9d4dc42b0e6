package pubsub_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/pubsub"
)

// scanStream reads a stream until it holds n events: SierraDB confirms
// appends asynchronously, so a read right after a publish may miss some.
func scanStream(t *testing.T, c *sierradb.Client, stream string, n int) []sierradb.Event {
	t.Helper()
	var evs []sierradb.Event
	eventually(t, func() error {
		evs = evs[:0]
		for ev, err := range c.ScanAll(context.Background(), stream, 0) {
			if err != nil {
				return err
			}
			evs = append(evs, ev)
		}
		if len(evs) != n {
			return fmt.Errorf("stream %s has %d events, want %d", stream, len(evs), n)
		}
		return nil
	})
	return evs
}

func TestPublishOneCallIsOneTransaction(t *testing.T) {
	eachServer(t, func(t *testing.T, _ server, c *sierradb.Client) {
		pub := newPublisher(t, pubsub.PublisherConfig{Client: c})
		stream := streamName("order")
		causing := uuid.New()
		msgs := make([]*message.Message, 3)
		for i := range msgs {
			msgs[i] = message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprint(i)))
			msgs[i].Metadata.Set("user_key", fmt.Sprint("value-", i))
		}
		msgs[0].Metadata.Set(esmill.MetaEventName, "OrderPlaced")
		msgs[1].Metadata.Set(esmill.MetaCorrelationID, "corr-1")
		msgs[1].Metadata.Set(esmill.MetaCommandID, "cmd-1")
		msgs[1].Metadata.Set(esmill.MetaCausationCommand, "PlaceOrder")
		msgs[1].Metadata.Set(esmill.MetaCausationEventID, causing.String())
		msgs[1].Metadata.Set(esmill.MetaCausationStreamID, "cart-1")
		msgs[1].Metadata.Set(esmill.MetaCausationStreamVersion, "4")
		// Keys the subscriber sets are not stored; other esmill keys are.
		msgs[2].Metadata.Set(esmill.MetaStreamVersion, "99")
		msgs[2].Metadata.Set(esmill.MetaCommand, "Ship")
		if err := pub.Publish(stream, msgs...); err != nil {
			t.Fatal(err)
		}

		evs := scanStream(t, c, stream, 3)
		for i, ev := range evs {
			if ev.StreamVersion != uint64(i) || string(ev.Payload) != fmt.Sprint(i) {
				t.Errorf("event %d: version %d payload %q", i, ev.StreamVersion, ev.Payload)
			}
			if ev.TransactionID != evs[0].TransactionID {
				t.Errorf("event %d in transaction %s, event 0 in %s: not one EMAPPEND", i, ev.TransactionID, evs[0].TransactionID)
			}
			md, err := codec.DecodeMetadata(ev.Metadata)
			if err != nil {
				t.Fatal(err)
			}
			var data map[string]string
			if err := md.DecodeData(&data); err != nil {
				t.Fatal(err)
			}
			if data["user_key"] != fmt.Sprint("value-", i) || data["esmill_message_uuid"] != msgs[i].UUID {
				t.Errorf("event %d data %v", i, data)
			}
			for k := range data {
				switch k {
				case "user_key", esmill.MetaMessageUUID, esmill.MetaCommand:
				default:
					t.Errorf("event %d stores key %s, which the envelope or the position carries", i, k)
				}
			}
			if i == 2 && data[esmill.MetaCommand] != "Ship" {
				t.Errorf("event 2 lost a command key: %v", data)
			}
			if i == 1 {
				want := codec.Causation{EventID: causing, StreamID: "cart-1", StreamVersion: 4}
				if md.Causation == nil || *md.Causation != want || md.Command != "PlaceOrder" ||
					md.CorrelationID != "corr-1" || md.CommandID != "cmd-1" {
					t.Errorf("event 1 envelope %+v causation %+v", md, md.Causation)
				}
			}
		}
		if evs[0].Name != "OrderPlaced" || evs[1].Name != pubsub.DefaultEventName {
			t.Errorf("names %q, %q", evs[0].Name, evs[1].Name)
		}
	})
}

func TestPublishExpectedVersion(t *testing.T) {
	eachServer(t, func(t *testing.T, _ server, c *sierradb.Client) {
		pub := newPublisher(t, pubsub.PublisherConfig{Client: c})
		stream := streamName("acct")
		withVersion := func(v string) *message.Message {
			m := message.NewMessage(watermill.NewUUID(), []byte(v))
			m.Metadata.Set(esmill.MetaAppendExpectedVersion, v)
			return m
		}
		if err := pub.Publish(stream, withVersion("empty")); err != nil {
			t.Fatal(err)
		}
		// An explicit expectation is never retried.
		err := pub.Publish(stream, withVersion("empty"))
		var wv *sierradb.WrongExpectedVersionError
		if !errors.Is(err, sierradb.ErrWrongExpectedVersion) || !errors.As(err, &wv) || wv.Current != 0 {
			t.Fatalf("second empty: %v", err)
		}
		// A call may mix: an explicit first message, then messages that
		// follow it.
		if err := pub.Publish(stream, withVersion("0"), message.NewMessage(watermill.NewUUID(), []byte("auto"))); err != nil {
			t.Fatal(err)
		}
		err = pub.Publish(stream, withVersion("abc"))
		var me *pubsub.MessageError
		if !errors.Is(err, pubsub.ErrInvalidMessage) || !errors.As(err, &me) || me.Key != esmill.MetaAppendExpectedVersion {
			t.Fatalf("malformed version: %v", err)
		}
		if err := pub.Publish(stream, message.NewMessage(watermill.NewUUID(), []byte("auto"))); err != nil {
			t.Fatal(err)
		}
		evs := scanStream(t, c, stream, 4)
		if got := string(evs[3].Payload); got != "auto" {
			t.Errorf("last event %q", got)
		}

		strict := newPublisher(t, pubsub.PublisherConfig{Client: c, RequireExpectedVersion: true})
		if err := strict.Publish(stream, message.NewMessage(watermill.NewUUID(), nil)); !errors.Is(err, pubsub.ErrInvalidMessage) {
			t.Fatalf("strict publisher without version: %v", err)
		}
		if err := strict.Publish(stream, withVersion("3")); err != nil {
			t.Fatal(err)
		}
	})
}

// Several publishers (as several processes would) append to one stream at
// once without expected versions: conflicts are retried after the version
// the server reports, and every message is stored exactly once.
func TestPublishConcurrentPublishers(t *testing.T) {
	eachServer(t, func(t *testing.T, _ server, c *sierradb.Client) {
		stream := streamName("busy")
		const pubs, each = 4, 40
		var wg sync.WaitGroup
		sent := make(chan string, pubs*each)
		// Every publisher exists before any goroutine starts, so that no
		// failure ends the test while a goroutine still reports to it.
		var all []*pubsub.Publisher
		for range pubs {
			all = append(all, newPublisher(t, pubsub.PublisherConfig{Client: c, MaxConflictRetries: 100}))
		}
		for _, pub := range all {
			for range 2 { // two goroutines per publisher
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range each / 2 {
						m := message.NewMessage(watermill.NewUUID(), nil)
						if err := pub.Publish(stream, m); err != nil {
							t.Error(err)
							return
						}
						sent <- m.UUID
					}
				}()
			}
		}
		wg.Wait()
		close(sent)
		want := map[string]bool{}
		for id := range sent {
			want[id] = true
		}
		for i, ev := range scanStream(t, c, stream, pubs*each) {
			if ev.StreamVersion != uint64(i) {
				t.Fatalf("event %d has version %d", i, ev.StreamVersion)
			}
			md, _ := codec.DecodeMetadata(ev.Metadata)
			var data map[string]string
			md.DecodeData(&data)
			if !want[data["esmill_message_uuid"]] {
				t.Fatalf("event %d: unknown or duplicate message %q", i, data["esmill_message_uuid"])
			}
			delete(want, data["esmill_message_uuid"])
		}
	})
}

func TestPublishRejects(t *testing.T) {
	eachServer(t, func(t *testing.T, _ server, c *sierradb.Client) {
		pub := newPublisher(t, pubsub.PublisherConfig{Client: c})
		for _, topic := range []string{"", "*", "order-*", strings.Repeat("x", 65), "nul\x00"} {
			err := pub.Publish(topic, message.NewMessage(watermill.NewUUID(), nil))
			var te *pubsub.TopicError
			if !errors.Is(err, pubsub.ErrInvalidTopic) || !errors.As(err, &te) || te.Topic != topic {
				t.Errorf("topic %q: %v", topic, err)
			}
		}
		stream := streamName("rej")
		long := message.NewMessage(watermill.NewUUID(), nil)
		long.Metadata.Set(esmill.MetaEventName, strings.Repeat("n", 256))
		if err := pub.Publish(stream, long); !errors.Is(err, pubsub.ErrInvalidMessage) {
			t.Errorf("long event name: %v", err)
		}
		half := message.NewMessage(watermill.NewUUID(), nil)
		half.Metadata.Set(esmill.MetaCausationEventID, uuid.NewString())
		if err := pub.Publish(stream, half); !errors.Is(err, pubsub.ErrInvalidMessage) {
			t.Errorf("causation without stream: %v", err)
		}

		// A cancelled message context stops the whole call.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		ok := message.NewMessage(watermill.NewUUID(), nil)
		done := message.NewMessage(watermill.NewUUID(), nil)
		done.SetContext(ctx)
		if err := pub.Publish(stream, ok, done); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled context: %v", err)
		}
		if v, err := c.StreamVersion(context.Background(), stream); err != nil || v != -1 {
			t.Errorf("stream after rejected calls: version %d, %v", v, err)
		}
		if err := pub.Publish(stream); err != nil {
			t.Errorf("no messages: %v", err)
		}
	})
}

// A custom topic mapping and event name function.
func TestPublishConfigFuncs(t *testing.T) {
	eachServer(t, func(t *testing.T, _ server, c *sierradb.Client) {
		prefix := streamName("tenant") + "."
		topics := pubsub.Topics{StreamID: func(topic string) string { return prefix + topic }}
		pub := newPublisher(t, pubsub.PublisherConfig{
			Client: c, Topics: topics,
			EventName: func(topic string, msg *message.Message) string { return "Name-" + topic },
		})
		if err := pub.Publish("orders", message.NewMessage(watermill.NewUUID(), nil)); err != nil {
			t.Fatal(err)
		}
		evs := scanStream(t, c, prefix+"orders", 1)
		if evs[0].Name != "Name-orders" {
			t.Errorf("event name %q", evs[0].Name)
		}
		sub := newSubscriber(t, pubsub.SubscriberConfig{Client: c, Topics: topics})
		ch, err := sub.Subscribe(ctxT(t), "orders")
		if err != nil {
			t.Fatal(err)
		}
		if got := receive(t, ch).Metadata[esmill.MetaStreamID]; got != prefix+"orders" {
			t.Errorf("stream id %q", got)
		}
	})
}

func TestPublisherLifecycle(t *testing.T) {
	if _, err := pubsub.NewPublisher(pubsub.PublisherConfig{MaxConflictRetries: -2, MaxBatchEvents: -1}); err == nil ||
		!strings.Contains(err.Error(), "Client") || !strings.Contains(err.Error(), "MaxConflictRetries") || !strings.Contains(err.Error(), "MaxBatchEvents") {
		t.Errorf("invalid config: %v", err)
	}
	eachServer(t, func(t *testing.T, _ server, c *sierradb.Client) {
		pub := newPublisher(t, pubsub.PublisherConfig{Client: c})
		if err := pub.Close(); err != nil {
			t.Fatal(err)
		}
		if err := pub.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if err := pub.Publish(streamName("closed"), message.NewMessage(watermill.NewUUID(), nil)); !errors.Is(err, pubsub.ErrClosed) {
			t.Fatalf("publish after Close: %v", err)
		}
		// The client belongs to the caller and stays open.
		if err := c.Ping(context.Background()); err != nil {
			t.Fatalf("client after publisher Close: %v", err)
		}
	})
}

// Calls to one stream that queue behind each other, some cancelled while
// they wait or while they are sent: a call that returns nil is stored,
// once; nothing is stored twice; versions stay gapless.
func TestPublishCancelWhileQueued(t *testing.T) {
	eachServer(t, func(t *testing.T, _ server, c *sierradb.Client) {
		pub := newPublisher(t, pubsub.PublisherConfig{Client: c})
		stream := streamName("cancel")
		var mu sync.Mutex
		ok := map[string]bool{}
		expired := map[string]bool{} // published with a context already done
		failed := 0
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 25 {
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration((g+i)%4)*time.Millisecond)
					m := message.NewMessage(watermill.NewUUID(), nil)
					m.SetContext(ctx)
					err := pub.Publish(stream, m)
					cancel()
					mu.Lock()
					if (g+i)%4 == 0 {
						expired[m.UUID] = true
						if err == nil {
							t.Errorf("message %s: Publish with a context already done returned nil", m.UUID)
						}
					}
					switch {
					case err == nil:
						ok[m.UUID] = true
					case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
						failed++
					default:
						t.Errorf("publish: %v", err)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		// A cancelled call may still have reached the server: read
		// until every successful one is there (the real server's reads
		// may lag its acknowledgements: counting events is not enough,
		// those of cancelled calls can be visible first).
		var evs []sierradb.Event
		eventually(t, func() error {
			evs = evs[:0]
			ids := map[string]bool{}
			for ev, err := range c.ScanAll(context.Background(), stream, 0) {
				if err != nil {
					return err
				}
				evs = append(evs, ev)
				if md, err := codec.DecodeMetadata(ev.Metadata); err == nil {
					var data map[string]string
					if md.DecodeData(&data) == nil {
						ids[data["esmill_message_uuid"]] = true
					}
				}
			}
			missing := 0
			for id := range ok {
				if !ids[id] {
					missing++
				}
			}
			if missing > 0 {
				return fmt.Errorf("%d events read, %d of the %d successful calls' messages not among them", len(evs), missing, len(ok))
			}
			return nil
		})
		seen := map[string]bool{}
		for i, ev := range evs {
			if ev.StreamVersion != uint64(i) {
				t.Fatalf("event %d has version %d", i, ev.StreamVersion)
			}
			md, err := codec.DecodeMetadata(ev.Metadata)
			if err != nil {
				t.Fatalf("event %d: metadata: %v", i, err)
			}
			var data map[string]string
			if err := md.DecodeData(&data); err != nil {
				t.Fatalf("event %d: metadata data: %v", i, err)
			}
			id := data["esmill_message_uuid"]
			if id == "" || seen[id] {
				t.Fatalf("message %q stored twice (or without its UUID)", id)
			}
			if expired[id] {
				t.Fatalf("message %s was stored although its context was done before Publish", id)
			}
			seen[id] = true
		}
		for id := range ok {
			if !seen[id] {
				t.Errorf("message %s: Publish returned nil but it is not stored", id)
			}
		}
		// Every call is accounted for: stored and reported, or cancelled
		// with its context's error (the 50 with an expired context among them).
		if len(ok)+failed != 200 || failed < len(expired) || len(expired) != 50 {
			t.Fatalf("%d calls returned nil and %d a context error, of 200 (%d with an expired context)", len(ok), failed, len(expired))
		}
		t.Logf("%d stored (%d returned nil), %d cancelled (%d before they were sent)", len(evs), len(ok), failed, len(expired))
	})
}
