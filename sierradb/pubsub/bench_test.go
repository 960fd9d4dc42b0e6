package pubsub_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/pubsub"
)

// The benchmarks put the adapter next to the raw client doing the same
// work, on each server, and report messages per second (msgs/s):
//
//	go test -run '^$' -bench . -benchtime 2s ./sierradb/pubsub/

var benchPayload = make([]byte, 128)

func eachBenchServer(b *testing.B, f func(b *testing.B, c *sierradb.Client)) {
	for _, srv := range servers {
		b.Run(srv.name, func(b *testing.B) {
			f(b, newClient(b, srv.addr(b)))
		})
	}
}

// benchMetadata is what the adapter stores for a message with one user
// key: the raw client sends the same bytes.
func benchMetadata(b *testing.B) []byte {
	data, err := codec.EncodeData(map[string]string{"k": "v", "esmill_message_uuid": watermill.NewUUID()})
	if err != nil {
		b.Fatal(err)
	}
	md, err := codec.EncodeMetadata(codec.Metadata{Data: data})
	if err != nil {
		b.Fatal(err)
	}
	return md
}

// runParallel spreads b.N messages over workers goroutines, each on a
// stream of its own, in calls of batch messages, and reports msgs/s.
func runParallel(b *testing.B, workers, batch int, op func(w int, stream string, first int64, n int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	run := streamName("bench")
	b.ResetTimer()
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("%s-%d", run, w)
			v := int64(0)
			for {
				end := next.Add(int64(batch))
				n := batch
				if over := end - int64(b.N); over > 0 {
					n -= int(over)
				}
				if n <= 0 {
					return
				}
				if err := op(w, stream, v, n); err != nil {
					failed.Store(err)
					return
				}
				v += int64(n)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}

// BenchmarkPublish: Publish through the adapter (which encodes the
// metadata and keeps each stream's version) and Append/AppendMulti on the
// raw client (same payload and metadata bytes, versions known), serially
// with one message per call, in calls of 10 messages, and from 16
// goroutines each on its own stream. "adapter/one-stream" has 16
// goroutines publish to a single stream, whose calls the adapter joins.
func BenchmarkPublish(b *testing.B) {
	eachBenchServer(b, func(b *testing.B, c *sierradb.Client) {
		md := benchMetadata(b)
		ctx := context.Background()
		pub := newPublisher(b, pubsub.PublisherConfig{Client: c})
		adapter := func(_ int, stream string, _ int64, n int) error {
			msgs := make([]*message.Message, n)
			for i := range msgs {
				msgs[i] = message.NewMessage(watermill.NewUUID(), benchPayload)
				msgs[i].Metadata.Set("k", "v")
			}
			return pub.Publish(stream, msgs...)
		}
		raw := func(_ int, stream string, first int64, n int) error {
			if n == 1 {
				_, err := c.Append(ctx, sierradb.NewEvent{StreamID: stream, Name: pubsub.DefaultEventName,
					ExpectedVersion: sierradb.ExpectAfter(first - 1), Payload: benchPayload, Metadata: md})
				return err
			}
			evs := make([]sierradb.NewEvent, n)
			for i := range evs {
				evs[i] = sierradb.NewEvent{StreamID: stream, Name: pubsub.DefaultEventName,
					ExpectedVersion: sierradb.ExpectAfter(first + int64(i) - 1), Payload: benchPayload, Metadata: md}
			}
			_, err := c.AppendMulti(ctx, sierradb.StreamPartitionKey(stream), evs)
			return err
		}
		for _, shape := range []struct {
			name           string
			workers, batch int
		}{{"serial", 1, 1}, {"batch10", 1, 10}, {"goroutines16", 16, 1}} {
			b.Run("adapter/"+shape.name, func(b *testing.B) { runParallel(b, shape.workers, shape.batch, adapter) })
			b.Run("raw/"+shape.name, func(b *testing.B) { runParallel(b, shape.workers, shape.batch, raw) })
		}
		b.Run("adapter/one-stream-goroutines16", func(b *testing.B) {
			stream := streamName("bench-one")
			runParallel(b, 16, 1, func(w int, _ string, _ int64, n int) error { return adapter(w, stream, 0, n) })
		})
	})
}

// BenchmarkSubscribe reads the same stored events of one stream through
// the adapter (Subscribe, Ack each message) and through the raw client
// (SubscribeStream, Ack each event). "adapter/group" also saves a
// consumer group's checkpoint (in memory) after every ack.
func BenchmarkSubscribe(b *testing.B) {
	const total = 20_000
	eachBenchServer(b, func(b *testing.B, c *sierradb.Client) {
		stream := streamName("bench-sub")
		pub := newPublisher(b, pubsub.PublisherConfig{Client: c})
		for sent := 0; sent < total; sent += 500 {
			msgs := make([]*message.Message, 500)
			for i := range msgs {
				msgs[i] = message.NewMessage(watermill.NewUUID(), benchPayload)
				msgs[i].Metadata.Set("k", "v")
			}
			if err := pub.Publish(stream, msgs...); err != nil {
				b.Fatal(err)
			}
		}
		ctx := context.Background()
		readRaw := func(b *testing.B) {
			sub, err := c.SubscribeStream(ctx, stream, sierradb.StartBeginning)
			if err != nil {
				b.Fatal(err)
			}
			for range total {
				sub.Ack(<-sub.Events())
			}
			sub.Close()
		}
		// One untimed read first: right after the appends, the real
		// server is still busy with them, which would penalise whatever
		// runs first.
		readRaw(b)
		report := func(b *testing.B, start time.Time) {
			b.ReportMetric(float64(total*b.N)/time.Since(start).Seconds(), "msgs/s")
		}
		adapter := func(group string) func(b *testing.B) {
			return func(b *testing.B) {
				start := time.Now()
				for i := range b.N {
					cfg := pubsub.SubscriberConfig{Client: c}
					if group != "" {
						cfg.ConsumerGroup = fmt.Sprint(group, i) // a new group reads everything
					}
					sub := newSubscriber(b, cfg)
					ch, err := sub.Subscribe(ctx, stream)
					if err != nil {
						b.Fatal(err)
					}
					for range total {
						(<-ch).Ack()
					}
					sub.Close()
				}
				report(b, start)
			}
		}
		b.Run("adapter", adapter(""))
		b.Run("adapter/group", adapter("g"))
		b.Run("raw", func(b *testing.B) {
			start := time.Now()
			for range b.N {
				readRaw(b)
			}
			report(b, start)
		})
	})
}
