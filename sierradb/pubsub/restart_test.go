package pubsub_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/pubsub"
)

// TestGroupRestart restarts a consumer group at random points, many times,
// while a publisher keeps appending. Each round subscribes, takes a random
// number of messages (acking them, now and then nacking one), and ends with
// Close or with a cancelled context, sometimes holding a message it never
// acked, and saves its checkpoint after every 1 to 5 acks. Every event must
// arrive, per stream in order, and a message may arrive again only if it
// was not acked: each round must start exactly after the last acked message
// of its stream.
func TestGroupRestart(t *testing.T) {
	eachServer(t, func(t *testing.T, srv server, c *sierradb.Client) {
		total := 600
		if testing.Short() {
			total = 200
		}
		for _, kind := range []string{"stream", "category"} {
			t.Run(kind, func(t *testing.T) {
				groupRestart(t, c, kind, total)
			})
		}
	})
}

func groupRestart(t *testing.T, c *sierradb.Client, kind string, total int) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 1))

	cat := streamName("restart")
	streams := []string{cat + "-0"}
	topic := streams[0]
	if kind == "category" {
		streams = []string{cat + "-0", cat + "-1", cat + "-2"}
		topic = cat + "-*"
	}

	// The publisher appends total events round robin over the streams,
	// in calls of one to three messages; payload "<stream index>:<n>".
	type call struct{ stream, first, n int }
	var plan []call
	perStream := make([]int, len(streams))
	for sent := 0; sent < total; {
		s := len(plan) % len(streams)
		n := min(1+rnd.IntN(3), total-sent)
		plan = append(plan, call{s, perStream[s], n})
		perStream[s] += n
		sent += n
	}
	pub := newPublisher(t, pubsub.PublisherConfig{Client: c})
	pubDone := make(chan error, 1) // holds the result once done
	go func() {
		prnd := rand.New(rand.NewPCG(seed, 2))
		for _, cl := range plan {
			msgs := make([]*message.Message, cl.n)
			for i := range msgs {
				msgs[i] = message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprintf("%d:%d", cl.stream, cl.first+i)))
			}
			if err := pub.Publish(streams[cl.stream], msgs...); err != nil {
				pubDone <- err
				return
			}
			time.Sleep(time.Duration(prnd.IntN(1500)) * time.Microsecond)
		}
		pubDone <- nil
	}()
	publishing := func() bool { return len(pubDone) == 0 }

	store := pubsub.NewMemoryCheckpoints()
	// acked[s] is the number of the first message of stream s not acked
	// yet; highest[s] the highest number delivered so far.
	acked := make([]int, len(streams))
	highest := make([]int, len(streams))
	for s := range highest {
		highest[s] = -1
	}
	var rounds, duringPublish, redelivered, unackedAtClose, nacks, received int
	deadline := time.Now().Add(2 * time.Minute)
	done := func() bool {
		for s := range streams {
			if acked[s] < perStream[s] {
				return false
			}
		}
		return true
	}
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("not done after %d rounds: acked %v of %v", rounds, acked, perStream)
		}
		rounds++
		if publishing() {
			duringPublish++
		}
		// Batched checkpoints too: a graceful close saves what was acked.
		sub, err := pubsub.NewSubscriber(pubsub.SubscriberConfig{
			Client: c, ConsumerGroup: "g", Checkpoints: store, NackDelay: time.Millisecond,
			CheckpointEvery: 1 + rnd.IntN(5),
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ch, err := sub.Subscribe(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		take := 1 + rnd.IntN(total/15) // about 30 rounds
		held := false
		for i := 0; i < take && !done(); i++ {
			msg := receive(t, ch)
			received++
			s, n := parsePayload(t, msg)
			// In order, nothing skipped, and nothing acked comes again:
			// the next message of a stream is always its first unacked
			// one, within a round and after a restart.
			if n != acked[s] {
				t.Fatalf("round %d: stream %d delivered message %d, want %d", rounds, s, n, acked[s])
			}
			if n <= highest[s] {
				redelivered++
			}
			highest[s] = max(highest[s], n)
			switch r := rnd.IntN(20); {
			case r == 0:
				msg.Nack() // comes again, first
				nacks++
			case i == take-1 && r < 10:
				held = true // left unacked at the restart
			default:
				msg.Ack()
				acked[s]++
			}
		}
		if held {
			unackedAtClose++
		}
		if rnd.IntN(2) == 0 {
			cancel() // end by the context, then Close
		}
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
		cancel()
		closed(t, ch)
	}
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d events over %d streams, %d restarts (%d while publishing), %d messages received, %d redelivered (%d nacked, %d left unacked at a restart)",
		kind, total, len(streams), rounds, duringPublish, received, redelivered, nacks, unackedAtClose)
	if rounds < 10 || duringPublish < 5 {
		t.Errorf("only %d restarts, %d of them while publishing", rounds, duringPublish)
	}
	if received != total+redelivered {
		t.Errorf("received %d messages for %d events and %d redeliveries", received, total, redelivered)
	}
}

func parsePayload(t *testing.T, msg *message.Message) (stream, n int) {
	t.Helper()
	a, b, ok := strings.Cut(string(msg.Payload), ":")
	s, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("payload %q", msg.Payload)
	}
	return s, n
}
