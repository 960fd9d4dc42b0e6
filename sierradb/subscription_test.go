package sierradb_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
)

// appendN appends n events to stream under key, continuing its versions.
// The version read first may trail the server's (SierraDB confirms
// asynchronously); a conflict tells the real one.
func appendN(t *testing.T, c *sierradb.Client, key uuid.UUID, stream string, n int) {
	t.Helper()
	ctx := ctxT(t)
	v, err := c.StreamVersion(ctx, stream, sierradb.WithPartitionKey(key))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; {
		_, err := c.AppendMulti(ctx, key, []sierradb.NewEvent{{
			StreamID: stream, Name: "E", ExpectedVersion: sierradb.ExpectAfter(v),
			Payload: []byte(fmt.Sprint(v + 1)),
		}})
		var wv *sierradb.WrongExpectedVersionError
		switch {
		case errors.As(err, &wv) && wv.Parsed:
			v = wv.Current
		case err != nil:
			t.Error(err)
			return
		default:
			v++
			i++
		}
	}
}

// receive reads n events of stream from sub, acking every event, and
// fails on timeout.
func receive(t *testing.T, sub *sierradb.Subscription, stream string, n int, ack bool) []sierradb.Event {
	t.Helper()
	var got []sierradb.Event
	timeout := time.After(20 * time.Second)
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
			t.Fatalf("received %d of %d events", len(got), n)
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
		sub, err := c.SubscribePartitions(ctx, sierradb.PartitionSubscription{
			Partitions: []uint16{p}, From: map[uint16]uint64{p: uint64(head + 1)}, Window: 5,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		// Without acknowledgements the server sends exactly one window.
		first := receive(t, sub, "", 5, false)
		select {
		case ev := <-sub.Events():
			t.Fatalf("a sixth event (version %d) arrived with five unacknowledged", ev.StreamVersion)
		case <-time.After(300 * time.Millisecond):
		}
		for _, ev := range first {
			sub.Ack(ev)
		}
		rest := receive(t, sub, "", 7, true)
		checkVersions(t, append(first, rest...), 0)
	})
}

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
			reader := newClient(t, proxy.Addr())
			ctx := ctxT(t)
			key := uuid.New()
			stream := streamName("drop")
			p, _ := writer.PartitionOf(ctx, key)
			sub, err := reader.SubscribePartitions(ctx, sierradb.PartitionSubscription{
				Partitions: []uint16{p}, Default: sierradb.StartLatest, Window: 16,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			const total = 600
			done := make(chan struct{})
			go func() {
				defer close(done)
				for range 6 {
					time.Sleep(30 * time.Millisecond)
					proxy.DropAll()
				}
			}()
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				appendN(t, writer, key, stream, total)
			}()
			got := receive(t, sub, stream, total, true)
			wg.Wait()
			<-done
			checkVersions(t, got, 0)
			select {
			case ev := <-sub.Events():
				if ev.StreamID == stream {
					t.Fatalf("duplicate delivery of version %d", ev.StreamVersion)
				}
			case <-time.After(200 * time.Millisecond):
			}
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
