package pubsub_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

func publish(t testing.TB, pub message.Publisher, topic string, payloads ...string) []*message.Message {
	t.Helper()
	msgs := make([]*message.Message, len(payloads))
	for i, p := range payloads {
		msgs[i] = message.NewMessage(watermill.NewUUID(), []byte(p))
	}
	if err := pub.Publish(topic, msgs...); err != nil {
		t.Fatal(err)
	}
	return msgs
}

func payloads(msgs []*message.Message) string {
	s := make([]string, len(msgs))
	for i, m := range msgs {
		s[i] = string(m.Payload)
	}
	return strings.Join(s, " ")
}

func TestSubscribeMetadata(t *testing.T) {
	eachServer(t, func(t *testing.T, _ server, c *sierradb.Client) {
		pub := newPublisher(t, pubsub.PublisherConfig{Client: c})
		stream := streamName("meta")
		causing := uuid.New()
		m := message.NewMessage(watermill.NewUUID(), []byte("hello"))
		m.Metadata.Set("user_key", "v")
		m.Metadata.Set(esmill.MetaEventName, "Greeted")
		m.Metadata.Set(esmill.MetaCorrelationID, "corr")
		m.Metadata.Set(esmill.MetaCommandID, "cmd")
		m.Metadata.Set(esmill.MetaCausationCommand, "Greet")
		m.Metadata.Set(esmill.MetaCausationEventID, causing.String())
		m.Metadata.Set(esmill.MetaCausationStreamID, "s")
		m.Metadata.Set(esmill.MetaCausationStreamVersion, "7")
		before := time.Now().Add(-time.Second)
		if err := pub.Publish(stream, m); err != nil {
			t.Fatal(err)
		}
		ev := scanStream(t, c, stream, 1)[0]

		sub := newSubscriber(t, pubsub.SubscriberConfig{Client: c})
		ch, err := sub.Subscribe(ctxT(t), stream)
		if err != nil {
			t.Fatal(err)
		}
		got := receive(t, ch)
		got.Ack()
		if got.UUID != m.UUID || string(got.Payload) != "hello" {
			t.Errorf("UUID %q payload %q", got.UUID, got.Payload)
		}
		want := map[string]string{
			"user_key":                        "v",
			esmill.MetaEventName:              "Greeted",
			esmill.MetaCorrelationID:          "corr",
			esmill.MetaCommandID:              "cmd",
			esmill.MetaCausationCommand:       "Greet",
			esmill.MetaCausationEventID:       causing.String(),
			esmill.MetaCausationStreamID:      "s",
			esmill.MetaCausationStreamVersion: "7",
			esmill.MetaEventID:                ev.ID.String(),
			esmill.MetaStreamID:               stream,
			esmill.MetaStreamVersion:          "0",
			esmill.MetaPartitionKey:           sierradb.StreamPartitionKey(stream).String(),
			esmill.MetaPartitionID:            fmt.Sprint(ev.PartitionID),
			esmill.MetaPartitionSequence:      fmt.Sprint(ev.PartitionSequence),
			esmill.MetaTransactionID:          ev.TransactionID.String(),
			esmill.MetaTimestamp:              ev.Timestamp.UTC().Format(pubsub.TimestampFormat),
		}
		for k, v := range want {
			if got.Metadata[k] != v {
				t.Errorf("metadata %s = %q, want %q", k, got.Metadata[k], v)
			}
		}
		if len(got.Metadata) != len(want) {
			t.Errorf("metadata has %d keys, want %d: %v", len(got.Metadata), len(want), got.Metadata)
		}
		ts, err := time.Parse(time.RFC3339Nano, got.Metadata[esmill.MetaTimestamp])
		if err != nil || ts.Before(before) || ts.After(time.Now().Add(time.Second)) {
			t.Errorf("timestamp %q: %v", got.Metadata[esmill.MetaTimestamp], err)
		}

		// A consumed message published again keeps its UUID, payload,
		// name, user metadata and causation; its positions are new.
		copyStream := streamName("meta-copy")
		if err := pub.Publish(copyStream, got.Copy()); err != nil {
			t.Fatal(err)
		}
		ch2, err := sub.Subscribe(ctxT(t), copyStream)
		if err != nil {
			t.Fatal(err)
		}
		again := receive(t, ch2)
		again.Ack()
		for _, k := range []string{"user_key", esmill.MetaEventName, esmill.MetaCausationEventID, esmill.MetaCorrelationID} {
			if again.Metadata[k] != got.Metadata[k] {
				t.Errorf("republished %s = %q, want %q", k, again.Metadata[k], got.Metadata[k])
			}
		}
		if again.UUID != m.UUID || again.Metadata[esmill.MetaStreamID] != copyStream || again.Metadata[esmill.MetaEventID] == ev.ID.String() {
			t.Errorf("republished message %s metadata %v", again.UUID, again.Metadata)
		}
	})
}

// Events written by other writers (kameo_es, raw clients, broken ones)
// become messages too, with whatever could be read.
func TestSubscribeForeignEvents(t *testing.T) {
	eachServer(t, func(t *testing.T, _ server, c *sierradb.Client) {
		ctx := ctxT(t)
		stream := streamName("foreign")
		type entityMeta struct {
			Tenant string `cbor:"tenant"`
			Count  int    `cbor:"count"`
		}
		kameoData, err := codec.EncodeData(entityMeta{Tenant: "acme", Count: 3})
		if err != nil {
			t.Fatal(err)
		}
		causing := uuid.New()
		kameo, err := codec.EncodeMetadata(codec.Metadata{
			Command: "Deposit", Causation: &codec.Causation{EventID: causing, StreamID: "x", StreamVersion: 1}, Data: kameoData,
		})
		if err != nil {
			t.Fatal(err)
		}
		listData, _ := codec.EncodeData([]string{"not", "a", "map"})
		list, _ := codec.EncodeMetadata(codec.Metadata{Data: listData})
		metas := [][]byte{nil, {0xff, 0x00, 0x13}, kameo, list}
		for i, md := range metas {
			_, err := c.Append(ctx, sierradb.NewEvent{StreamID: stream, Name: fmt.Sprint("E", i),
				ExpectedVersion: sierradb.ExpectAfter(int64(i) - 1), Payload: []byte(fmt.Sprint(i)), Metadata: md})
			if err != nil {
				t.Fatal(err)
			}
		}
		evs := scanStream(t, c, stream, len(metas))

		sub := newSubscriber(t, pubsub.SubscriberConfig{Client: c})
		ch, err := sub.Subscribe(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		got := receiveAck(t, ch, len(metas))
		for i, m := range got {
			if m.UUID != evs[i].ID.String() || string(m.Payload) != fmt.Sprint(i) || m.Metadata[esmill.MetaEventName] != fmt.Sprint("E", i) {
				t.Errorf("message %d: UUID %s payload %q metadata %v", i, m.UUID, m.Payload, m.Metadata)
			}
		}
		if e := got[0].Metadata[esmill.MetaMetadataError]; e != "" {
			t.Errorf("empty metadata reported %q", e)
		}
		if e := got[1].Metadata[esmill.MetaMetadataError]; !strings.Contains(e, "invalid event metadata") {
			t.Errorf("garbage metadata reported %q", e)
		}
		k := got[2].Metadata
		if k["tenant"] != "acme" || k[esmill.MetaCausationEventID] != causing.String() || k[esmill.MetaCausationCommand] != "Deposit" ||
			!strings.Contains(k[esmill.MetaMetadataError], "count") {
			t.Errorf("kameo metadata %v", k)
		}
		if e := got[3].Metadata[esmill.MetaMetadataError]; !strings.Contains(e, "not a map") {
			t.Errorf("list data reported %q", e)
		}
	})
}

func TestSubscribeCategoryAndAll(t *testing.T) {
	eachServer(t, func(t *testing.T, _ server, c *sierradb.Client) {
		pub := newPublisher(t, pubsub.PublisherConfig{Client: c})
		cat := streamName("cat")
		a, b, other := cat+"-a", cat+"-b", streamName("dog")
		publish(t, pub, a, "a0", "a1")
		publish(t, pub, other, "o0")
		publish(t, pub, b, "b0")
		publish(t, pub, a, "a2")
		publish(t, pub, b, "b1", "b2")

		sub := newSubscriber(t, pubsub.SubscriberConfig{Client: c})
		for _, tc := range []struct {
			topic   string
			streams []string
		}{
			{cat + "-*", []string{a, b}},
			{"*", []string{a, b, other}},
		} {
			ch, err := sub.Subscribe(ctxT(t), tc.topic)
			if err != nil {
				t.Fatal(err)
			}
			per := map[string][]string{}
			want := map[string]string{a: "a0 a1 a2", b: "b0 b1 b2", other: "o0"}
			total := 0
			for _, s := range tc.streams {
				total += len(strings.Fields(want[s]))
			}
			for n := 0; n < total; {
				m := receive(t, ch)
				m.Ack()
				s := m.Metadata[esmill.MetaStreamID]
				if tc.topic != "*" && !strings.HasPrefix(s, cat+"-") {
					t.Fatalf("topic %s delivered stream %s", tc.topic, s)
				}
				if _, ours := want[s]; ours {
					per[s] = append(per[s], string(m.Payload))
					n++
				}
			}
			for _, s := range tc.streams {
				if got := strings.Join(per[s], " "); got != want[s] {
					t.Errorf("topic %s stream %s: %q, want %q (in order)", tc.topic, s, got, want[s])
				}
			}
		}
	})
}

func TestNackRedelivers(t *testing.T) {
	eachServer(t, func(t *testing.T, _ server, c *sierradb.Client) {
		pub := newPublisher(t, pubsub.PublisherConfig{Client: c})
		stream := streamName("nack")
		sent := publish(t, pub, stream, "m0", "m1", "m2")

		var mu sync.Mutex
		var poisoned []string
		fail := true
		sub := newSubscriber(t, pubsub.SubscriberConfig{
			Client: c, NackDelay: time.Millisecond, MaxNackDelay: 4 * time.Millisecond, MaxRedeliveries: 2,
			OnRedeliveriesExhausted: func(ctx context.Context, topic string, msg *message.Message) error {
				mu.Lock()
				defer mu.Unlock()
				if fail { // the first call fails: the message comes again
					fail = false
					return errors.New("poison topic unavailable")
				}
				poisoned = append(poisoned, topic+":"+string(msg.Payload))
				return nil
			},
		})
		ch, err := sub.Subscribe(ctxT(t), stream)
		if err != nil {
			t.Fatal(err)
		}
		// m0: delivered, then 2 redeliveries; the third Nack goes to the
		// hook, which fails once, so m0 comes a fourth time; its Nack
		// goes to the hook again, which takes it.
		for i := range 4 {
			m := receive(t, ch)
			if string(m.Payload) != "m0" || m.UUID != sent[0].UUID {
				t.Fatalf("delivery %d: %s", i, m.Payload)
			}
			if want := fmt.Sprint(i); i > 0 && m.Metadata[esmill.MetaRedeliveries] != want {
				t.Errorf("delivery %d: redeliveries %q", i, m.Metadata[esmill.MetaRedeliveries])
			}
			m.Nack()
			select {
			case <-m.Context().Done():
			case <-time.After(5 * time.Second):
				t.Fatal("message context not cancelled by Nack")
			}
		}
		m := receive(t, ch)
		if string(m.Payload) != "m1" {
			t.Fatalf("after the hook took m0: %s", m.Payload)
		}
		m.Ack()
		mu.Lock()
		if len(poisoned) != 1 || poisoned[0] != stream+":m0" {
			t.Errorf("hook got %v", poisoned)
		}
		mu.Unlock()

		// Without a hook, the message is dropped after its last
		// redelivery, so delivery is never stuck.
		drop := newSubscriber(t, pubsub.SubscriberConfig{Client: c, NackDelay: time.Millisecond, MaxRedeliveries: 1})
		ch, err = drop.Subscribe(ctxT(t), stream)
		if err != nil {
			t.Fatal(err)
		}
		receive(t, ch).Nack()
		receive(t, ch).Nack()
		if m := receive(t, ch); string(m.Payload) != "m1" {
			t.Fatalf("after dropping m0: %s", m.Payload)
		}
	})
}

func TestNackDelayGrows(t *testing.T) {
	eachServer(t, func(t *testing.T, _ server, c *sierradb.Client) {
		pub := newPublisher(t, pubsub.PublisherConfig{Client: c})
		stream := streamName("delay")
		publish(t, pub, stream, "m0")
		sub := newSubscriber(t, pubsub.SubscriberConfig{Client: c, NackDelay: 20 * time.Millisecond, MaxNackDelay: 80 * time.Millisecond})
		ch, err := sub.Subscribe(ctxT(t), stream)
		if err != nil {
			t.Fatal(err)
		}
		receive(t, ch).Nack()
		// Waits: 20, 40, 80, 80 ms.
		for _, want := range []time.Duration{20, 40, 80, 80} {
			start := time.Now()
			m := receive(t, ch)
			got := time.Since(start)
			if got < want*time.Millisecond || got > want*time.Millisecond+time.Second {
				t.Errorf("redelivered after %v, want about %v ms", got, want)
			}
			m.Nack()
		}
	})
}

func TestSubscribeLifecycle(t *testing.T) {
	if _, err := pubsub.NewSubscriber(pubsub.SubscriberConfig{NackDelay: time.Second, MaxNackDelay: time.Millisecond, Window: -1}); err == nil ||
		!strings.Contains(err.Error(), "Client") || !strings.Contains(err.Error(), "NackDelay") || !strings.Contains(err.Error(), "Window") {
		t.Errorf("invalid config: %v", err)
	}
	eachServer(t, func(t *testing.T, _ server, c *sierradb.Client) {
		pub := newPublisher(t, pubsub.PublisherConfig{Client: c})
		stream := streamName("life")
		publish(t, pub, stream, "m0", "m1")
		sub := newSubscriber(t, pubsub.SubscriberConfig{Client: c})

		if _, err := sub.Subscribe(ctxT(t), strings.Repeat("s", 65)); !errors.Is(err, pubsub.ErrInvalidTopic) {
			t.Errorf("long topic: %v", err)
		}

		// Cancelling Subscribe's context ends that subscription, and
		// the message context with it.
		ctx, cancel := context.WithCancel(context.Background())
		ch, err := sub.Subscribe(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		m := receive(t, ch)
		cancel()
		select {
		case <-m.Context().Done():
		case <-time.After(5 * time.Second):
			t.Fatal("message context not cancelled with the subscription")
		}
		closed(t, ch)

		// Close ends the others and is idempotent; the client stays open.
		ch, err = sub.Subscribe(ctxT(t), stream)
		if err != nil {
			t.Fatal(err)
		}
		m = receive(t, ch)
		m.Ack()
		select {
		case <-m.Context().Done():
		case <-time.After(5 * time.Second):
			t.Fatal("message context not cancelled by Ack")
		}
		receive(t, ch) // m1, never acked
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
		closed(t, ch)
		if err := sub.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := sub.Subscribe(ctxT(t), stream); !errors.Is(err, pubsub.ErrClosed) {
			t.Errorf("subscribe after Close: %v", err)
		}
		if err := c.Ping(context.Background()); err != nil {
			t.Fatalf("client after subscriber Close: %v", err)
		}
	})
}

func TestConsumerGroupResumes(t *testing.T) {
	eachServer(t, func(t *testing.T, _ server, c *sierradb.Client) {
		pub := newPublisher(t, pubsub.PublisherConfig{Client: c})
		stream := streamName("group")
		publish(t, pub, stream, "m0", "m1", "m2", "m3", "m4")
		store := pubsub.NewMemoryCheckpoints()
		group := func(name string, every int) *pubsub.Subscriber {
			return newSubscriber(t, pubsub.SubscriberConfig{Client: c, ConsumerGroup: name, Checkpoints: store, CheckpointEvery: every})
		}

		s1 := group("g", 1)
		ch := subscribe(t, s1, stream)
		if got := payloads(receiveAck(t, ch, 2)); got != "m0 m1" {
			t.Fatalf("first: %s", got)
		}
		receive(t, ch) // m2 not acked
		s1.Close()

		s2 := group("g", 2)
		ch = subscribe(t, s2, stream)
		if got := payloads(receiveAck(t, ch, 3)); got != "m2 m3 m4" {
			t.Fatalf("resumed: %s", got)
		}
		publish(t, pub, stream, "m5")
		s2.Close() // saves m4, which CheckpointEvery 2 had not saved yet

		s3 := group("g", 1)
		ch = subscribe(t, s3, stream)
		if got := payloads(receiveAck(t, ch, 1)); got != "m5" {
			t.Fatalf("after close with unsaved ack: %s", got)
		}
		cps, _ := store.Load(context.Background(), "g", stream)
		if len(cps) != 1 {
			t.Errorf("checkpoints %v", cps)
		}

		// A new group starts at the beginning.
		ch = subscribe(t, group("other", 1), stream)
		if got := payloads(receiveAck(t, ch, 2)); got != "m0 m1" {
			t.Fatalf("new group: %s", got)
		}

		// A fan-out subscriber can start at the latest event.
		latest := newSubscriber(t, pubsub.SubscriberConfig{Client: c, Start: sierradb.StartLatest})
		ch = subscribe(t, latest, stream)
		noMessage(t, ch, 100*time.Millisecond)
		publish(t, pub, stream, "m6")
		if got := payloads(receiveAck(t, ch, 1)); got != "m6" {
			t.Fatalf("from latest: %s", got)
		}
	})
}

// A group on a category resumes per partition.
func TestConsumerGroupCategory(t *testing.T) {
	eachServer(t, func(t *testing.T, _ server, c *sierradb.Client) {
		pub := newPublisher(t, pubsub.PublisherConfig{Client: c})
		cat := streamName("gcat")
		streams := []string{cat + "-a", cat + "-b", cat + "-c"}
		for i := range 3 {
			for _, s := range streams {
				publish(t, pub, s, fmt.Sprint(s[len(s)-1:], i))
			}
		}
		store := pubsub.NewMemoryCheckpoints()
		read := func(n int) map[string][]string {
			sub := newSubscriber(t, pubsub.SubscriberConfig{Client: c, ConsumerGroup: "g", Checkpoints: store})
			defer sub.Close()
			ch, err := sub.Subscribe(ctxT(t), cat+"-*")
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]string{}
			for _, m := range receiveAck(t, ch, n) {
				s := m.Metadata[esmill.MetaStreamID]
				got[s] = append(got[s], string(m.Payload))
			}
			return got
		}
		all := map[string][]string{}
		for _, n := range []int{4, 5} {
			for s, ps := range read(n) {
				all[s] = append(all[s], ps...)
			}
		}
		for _, s := range streams {
			x := s[len(s)-1:]
			if got, want := strings.Join(all[s], " "), fmt.Sprintf("%s0 %s1 %s2", x, x, x); got != want {
				t.Errorf("stream %s: %q, want %q", s, got, want)
			}
		}
	})
}

// savesLog is a CheckpointStore that records every Save, in order, after
// storing it in a MemoryCheckpoints.
type savesLog struct {
	*pubsub.MemoryCheckpoints
	mu    sync.Mutex
	saves []savedAt
}

type savedAt struct {
	partition uint16
	sequence  uint64
}

func newSavesLog() *savesLog { return &savesLog{MemoryCheckpoints: pubsub.NewMemoryCheckpoints()} }

func (l *savesLog) Save(ctx context.Context, group, topic string, partition uint16, sequence uint64) error {
	l.mu.Lock()
	l.saves = append(l.saves, savedAt{partition, sequence})
	l.mu.Unlock()
	return l.MemoryCheckpoints.Save(ctx, group, topic, partition, sequence)
}

func (l *savesLog) log() []savedAt {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.saves)
}

// A group on a category moves its position past other streams' events
// (saved when idle), but never past a message it has not acked. The idle
// flush interval is cut to 5 ms (export_test.go) and the message is held
// unacked for a hundred of them, so that a save past it would have had
// every chance to happen; every save is logged and checked.
func TestConsumerGroupCategorySkips(t *testing.T) {
	eachServer(t, func(t *testing.T, _ server, c *sierradb.Client) {
		ctx := ctxT(t)
		pub := newPublisher(t, pubsub.PublisherConfig{Client: c})
		cat := streamName("skipcat")
		publish(t, pub, cat+"-a", "m0")
		mine := scanStream(t, c, cat+"-a", 1)[0]
		// Other streams' events after it, in many partitions, including
		// (very likely) its own.
		foreign := map[uint16]uint64{}
		for i := range 64 {
			s := streamName("skipother") + fmt.Sprint("-", i)
			publish(t, pub, s, "x")
			ev := scanStream(t, c, s, 1)[0]
			foreign[ev.PartitionID] = max(foreign[ev.PartitionID], ev.PartitionSequence)
		}
		const interval = 5 * time.Millisecond
		store := newSavesLog()
		sub := newSubscriber(t, pubsub.SubscriberConfig{Client: c, ConsumerGroup: "g", Checkpoints: store})
		pubsub.SetSkipFlushInterval(sub, interval)
		ch, err := sub.Subscribe(ctx, cat+"-*")
		if err != nil {
			t.Fatal(err)
		}
		m := receive(t, ch)
		// Not a wait for something to happen: a window in which nothing
		// may (a save past the held message), a hundred idle-flush intervals
		// long. The delivery loop holds the skips while a message is
		// out, so today none is saved in it; the window is what would
		// catch a change that saved them early.
		time.Sleep(100 * interval)
		held := len(store.log())
		m.Ack()
		eventually(t, func() error {
			cps, _ := store.Load(ctx, "g", cat+"-*")
			for p, seq := range foreign {
				if cps[p] < seq {
					return fmt.Errorf("partition %d at %d, want at least %d (all positions %v)", p, cps[p], seq, cps)
				}
			}
			return nil
		})
		for i, sv := range store.log()[:held] {
			if sv.partition == mine.PartitionID && sv.sequence >= mine.PartitionSequence {
				t.Fatalf("save %d, before the ack, moved partition %d to %d, past the unacked event at %d",
					i, sv.partition, sv.sequence, mine.PartitionSequence)
			}
		}
		t.Logf("%d saves while the message was held, %d in all", held, len(store.log()))
	})
}

// Without an ack and without idle time, a category group saves the
// positions of the events it passed over once every 1000 of them: with the
// idle flush pushed an hour away, 1000 foreign events are saved in one
// flush (each partition once, at its last foreign event), and not before.
func TestConsumerGroupSkipsSavedEvery1000(t *testing.T) {
	eachServer(t, func(t *testing.T, _ server, c *sierradb.Client) {
		ctx := ctxT(t)
		cat := streamName("every")
		store := newSavesLog()
		sub := newSubscriber(t, pubsub.SubscriberConfig{Client: c, ConsumerGroup: "g", Checkpoints: store, Start: sierradb.StartLatest})
		pubsub.SetSkipFlushInterval(sub, time.Hour)
		ch, err := sub.Subscribe(ctx, cat+"-*")
		if err != nil {
			t.Fatal(err)
		}
		pub := newPublisher(t, pubsub.PublisherConfig{Client: c})
		const streams = 10
		per := pubsub.SkipFlushEvery / streams
		foreign := map[uint16]uint64{}
		for i := range streams {
			s := streamName("everyother") + fmt.Sprint("-", i)
			publish(t, pub, s, slices.Repeat([]string{"x"}, per)...)
			evs := scanStream(t, c, s, per)
			last := evs[len(evs)-1]
			foreign[last.PartitionID] = max(foreign[last.PartitionID], last.PartitionSequence)
		}
		eventually(t, func() error {
			cps, _ := store.Load(ctx, "g", cat+"-*")
			for p, seq := range foreign {
				if cps[p] < seq {
					return fmt.Errorf("partition %d at %d, want %d (all positions %v)", p, cps[p], seq, cps)
				}
			}
			return nil
		})
		saved := map[uint16]int{}
		for _, sv := range store.log() {
			saved[sv.partition]++
			if sv.sequence != foreign[sv.partition] {
				t.Fatalf("partition %d saved at %d, want one save at %d: flushed before the 1000th event", sv.partition, sv.sequence, foreign[sv.partition])
			}
		}
		for p, n := range saved {
			if n != 1 {
				t.Fatalf("partition %d saved %d times, want once", p, n)
			}
		}
		if len(saved) != len(foreign) {
			t.Fatalf("%d partitions saved, want %d", len(saved), len(foreign))
		}
		// The group still delivers what matches.
		publish(t, pub, cat+"-a", "mine")
		if m := receive(t, ch); string(m.Payload) != "mine" {
			t.Fatalf("got %s", m.Payload)
		} else {
			m.Ack()
		}
		t.Logf("%d foreign events over %d partitions saved in one flush", pubsub.SkipFlushEvery, len(saved))
	})
}
