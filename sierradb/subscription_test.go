package sierradb_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
)

// appendN appends n events to stream under key, continuing its versions,
// ten per EMAPPEND (the real server takes about 30 ms per append).
func appendN(t *testing.T, c *sierradb.Client, key uuid.UUID, stream string, n int) {
	t.Helper()
	ctx := ctxT(t)
	v, err := c.StreamVersion(ctx, stream, sierradb.WithPartitionKey(key))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; {
		k := min(10, n-i)
		evs := make([]sierradb.NewEvent, k)
		for j := range evs {
			evs[j] = sierradb.NewEvent{StreamID: stream, Name: "E", ExpectedVersion: sierradb.ExpectAfter(v + int64(j)),
				Payload: []byte(fmt.Sprint(v + int64(j) + 1))}
		}
		_, err := c.AppendMulti(ctx, key, evs)
		var wv *sierradb.WrongExpectedVersionError
		switch {
		case errors.As(err, &wv) && wv.Parsed:
			v = wv.Current
		case err != nil:
			t.Fatal(err)
		default:
			v += int64(k)
			i += k
		}
	}
}

// appendBatch appends n events to stream in one EMAPPEND after version
// latest (-1: none), and returns the new latest version.
func appendBatch(t *testing.T, ctx context.Context, c *sierradb.Client, key uuid.UUID, stream string, latest int64, n int) int64 {
	t.Helper()
	evs := make([]sierradb.NewEvent, n)
	for i := range evs {
		v := latest + int64(i)
		evs[i] = sierradb.NewEvent{StreamID: stream, Name: "E", ExpectedVersion: sierradb.ExpectAfter(v), Payload: []byte(fmt.Sprint(v + 1))}
	}
	if _, err := c.AppendMulti(ctx, key, evs); err != nil {
		t.Fatal(err)
	}
	return latest + int64(n)
}

// receive reads n events of stream from sub, acking every event, and
// fails on timeout.
func receive(t *testing.T, sub *sierradb.Subscription, stream string, n int, ack bool) []sierradb.Event {
	t.Helper()
	return receiveAck(t, sub, stream, n, ack, 20*time.Second)
}

// receiveWithin is receive with acks and a timeout of its own.
func receiveWithin(t *testing.T, sub *sierradb.Subscription, stream string, n int, d time.Duration) []sierradb.Event {
	t.Helper()
	return receiveAck(t, sub, stream, n, true, d)
}

func receiveAck(t *testing.T, sub *sierradb.Subscription, stream string, n int, ack bool, d time.Duration) []sierradb.Event {
	t.Helper()
	var got []sierradb.Event
	timeout := time.After(d)
	for len(got) < n {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				t.Fatalf("subscription ended after %d of %d events: %v", len(got), n, sub.Err())
			}
			if ack {
				sub.Ack(ev)
			}
			if stream == "" || ev.StreamID == stream {
				got = append(got, ev)
			}
		case <-timeout:
			t.Fatalf("received %d of %d events in %s", len(got), n, d)
		}
	}
	return got
}

func checkVersions(t *testing.T, evs []sierradb.Event, first uint64) {
	t.Helper()
	for i, ev := range evs {
		if ev.StreamVersion != first+uint64(i) {
			t.Fatalf("event %d has version %d, want %d", i, ev.StreamVersion, first+uint64(i))
		}
	}
}

func TestSubscribePartitionHistoryThenLive(t *testing.T) {
	eachTarget(t, func(t *testing.T, c *sierradb.Client) {
		ctx := ctxT(t)
		key := uuid.New()
		stream := streamName("sub")
		p, _ := c.PartitionOf(ctx, key)
		head, err := c.PartitionSequence(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		appendN(t, c, key, stream, 20)
		sub, err := c.SubscribePartitions(ctx, sierradb.PartitionSubscription{
			Partitions: []uint16{p}, From: map[uint16]uint64{p: uint64(head + 1)},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		hist := receive(t, sub, stream, 20, true)
		checkVersions(t, hist, 0)
		appendN(t, c, key, stream, 10)
		live := receive(t, sub, stream, 10, true)
		checkVersions(t, live, 20)
		for i := 1; i < len(hist); i++ {
			if hist[i].PartitionSequence <= hist[i-1].PartitionSequence {
				t.Fatal("partition sequences out of order")
			}
		}
	})
}

func TestSubscribeSmallWindowNeverStalls(t *testing.T) {
	eachTarget(t, func(t *testing.T, c *sierradb.Client) {
		ctx := ctxT(t)
		key := uuid.New()
		stream := streamName("win")
		p, _ := c.PartitionOf(ctx, key)
		sub, err := c.SubscribePartitions(ctx, sierradb.PartitionSubscription{
			Partitions: []uint16{p}, Default: sierradb.StartLatest, Window: 3,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		appendN(t, c, key, stream, 200)
		checkVersions(t, receive(t, sub, stream, 200, true), 0)
	})
}

func TestSubscribeWindowHoldsUnackedEvents(t *testing.T) {
	eachTarget(t, func(t *testing.T, c *sierradb.Client) {
		ctx := ctxT(t)
		key := uuid.New()
		stream := streamName("hold")
		p, _ := c.PartitionOf(ctx, key)
		head, _ := c.PartitionSequence(ctx, p)
		appendN(t, c, key, stream, 12)
		start := time.Now()
		sub, err := c.SubscribePartitions(ctx, sierradb.PartitionSubscription{
			Partitions: []uint16{p}, From: map[uint16]uint64{p: uint64(head + 1)}, Window: 5,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		// Without acknowledgements the server sends exactly one window.
		// The silence that proves it lasts twenty times as long as the
		// window took to arrive (at least 300 ms), so a slow machine
		// waits longer instead of passing early.
		first := receive(t, sub, "", 5, false)
		hold := max(300*time.Millisecond, 20*time.Since(start))
		select {
		case ev := <-sub.Events():
			t.Fatalf("a sixth event (version %d) arrived with five unacknowledged", ev.StreamVersion)
		case <-time.After(hold):
		}
		for _, ev := range first {
			sub.Ack(ev)
		}
		rest := receive(t, sub, "", 7, true)
		checkVersions(t, append(first, rest...), 0)
	})
}

// A subscription whose connection is cut, again and again over the whole
// run, resumes after the last delivered event each time: every event once,
// in order. The test drives everything from its own goroutine (no goroutine
// outlives it), appends in batches, and waits for each batch as long as
// the server's measured pace says (the real SierraDB takes about 30 ms per
// append).
func TestSubscribeResumesAfterDroppedConnection(t *testing.T) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			addr := tg.addr(t)
			proxy, err := testservice.NewProxy(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			writer := newClient(t, addr)
			lost := &testservice.LogCounter{Match: "subscription connection lost"}
			reader, err := sierradb.New(sierradb.Config{Addr: proxy.Addr(), Logger: slog.New(lost),
				ReconnectMinBackoff: 10 * time.Millisecond, ReconnectMaxBackoff: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer reader.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			key := uuid.New()
			stream := streamName("drop")
			p, err := writer.PartitionOf(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			sub, err := reader.SubscribePartitions(ctx, sierradb.PartitionSubscription{
				Partitions: []uint16{p}, Default: sierradb.StartLatest, Window: 16,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()

			const batches, perBatch, dropEvery = 60, 10, 6
			var got []sierradb.Event
			var pace time.Duration // the slowest append so far
			drops := 0
			next := int64(-1) // the stream's latest version
			for b := range batches {
				if b > 0 && b%dropEvery == 0 {
					if proxy.DropAll() == 0 {
						t.Fatalf("drop %d cut no connection", drops+1)
					}
					drops++
				}
				start := time.Now()
				next = appendBatch(t, ctx, writer, key, stream, next, perBatch)
				pace = max(pace, time.Since(start))
				// The batch, plus a reconnection after a drop: generous
				// multiples of the measured pace.
				got = append(got, receiveWithin(t, sub, stream, perBatch, 20*pace+5*time.Second)...)
			}
			checkVersions(t, got, 0)
			if want := (batches - 1) / dropEvery; drops != want || lost.Count() != int64(drops) {
				t.Fatalf("%d drops (want %d), %d connections lost", drops, want, lost.Count())
			}
			// A duplicate would come before an event appended last.
			appendBatch(t, ctx, writer, key, stream, next, 1)
			if last := receiveWithin(t, sub, stream, 1, 20*pace+5*time.Second); last[0].StreamVersion != uint64(next+1) {
				t.Fatalf("duplicate delivery of version %d", last[0].StreamVersion)
			}
			t.Logf("%d events, %d connection drops, slowest append %s", len(got), drops, pace)
		})
	}
}

func TestSubscribeStream(t *testing.T) {
	eachTarget(t, func(t *testing.T, c *sierradb.Client) {
		ctx := ctxT(t)
		key := uuid.New()
		stream, other := streamName("mine"), streamName("other")
		appendN(t, c, key, stream, 10)
		appendN(t, c, key, other, 5)
		sub, err := c.SubscribeStream(ctx, stream, sierradb.StartAt(3), sierradb.WithPartitionKey(key))
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		got := receive(t, sub, "", 7, true)
		checkVersions(t, got, 3)
		appendN(t, c, key, other, 5)
		appendN(t, c, key, stream, 2)
		live := receive(t, sub, "", 2, true)
		checkVersions(t, live, 10)
		for _, ev := range append(got, live...) {
			if ev.StreamID != stream {
				t.Fatalf("stream subscription delivered %s", ev.StreamID)
			}
		}

		// From the latest: only what comes after.
		late, err := c.SubscribeStream(ctx, stream, sierradb.StartLatest, sierradb.WithPartitionKey(key))
		if err != nil {
			t.Fatal(err)
		}
		defer late.Close()
		appendN(t, c, key, stream, 1)
		checkVersions(t, receive(t, late, "", 1, true), 12)
	})
}

func TestSubscriptionCloseStopsGoroutines(t *testing.T) {
	eachTarget(t, func(t *testing.T, c *sierradb.Client) {
		ctx := ctxT(t)
		before := runtime.NumGoroutine()
		var subs []*sierradb.Subscription
		for range 5 {
			sub, err := c.SubscribePartitions(ctx, sierradb.PartitionSubscription{Default: sierradb.StartLatest})
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, sub)
		}
		for _, s := range subs[:3] {
			s.Close()
			s.Close()
			if _, ok := <-s.Events(); ok {
				t.Fatal("events channel open after Close")
			}
		}
		c.Close()
		for _, s := range subs[3:] {
			select {
			case <-s.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("client Close did not stop a subscription")
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before+2 {
			t.Fatalf("%d goroutines after closing, %d before", n, before)
		}
		if _, err := c.SubscribePartitions(context.Background(), sierradb.PartitionSubscription{}); !errors.Is(err, sierradb.ErrClosed) {
			t.Fatalf("subscribe on a closed client: %v", err)
		}
	})
}
