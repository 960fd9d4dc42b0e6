package cqrs_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

// gatedStore is the executor's store with a gate in front of AppendMulti:
// each append announces itself on entered and waits for a value on
// release (nil: append; an error: fail with it, writing nothing).
type gatedStore struct {
	aggregate.Store
	entered chan struct{}
	release chan error
}

func (g *gatedStore) AppendMulti(ctx context.Context, key uuid.UUID, evs []sierradb.NewEvent) (sierradb.MultiAppendResult, error) {
	g.entered <- struct{}{}
	if err := <-g.release; err != nil {
		return sierradb.MultiAppendResult{}, err
	}
	return g.Store.AppendMulti(ctx, key, evs)
}

// handSubscriber is a Watermill subscriber fed by the test: it hands out
// the very messages the test sends, so that the test sees their Ack and
// Nack.
type handSubscriber struct {
	mu     sync.Mutex
	topics map[string]chan *message.Message
	closed bool
}

func (h *handSubscriber) ch(topic string) chan *message.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.topics[topic] == nil {
		h.topics[topic] = make(chan *message.Message, 16)
	}
	return h.topics[topic]
}

func (h *handSubscriber) Subscribe(_ context.Context, topic string) (<-chan *message.Message, error) {
	return h.ch(topic), nil
}

// Close ends every subscription (the router calls it when it closes).
func (h *handSubscriber) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		for _, ch := range h.topics {
			close(ch)
		}
	}
	return nil
}

// The router acks a command message only once its events are stored: while
// the append is held at the store, the message is neither acked nor
// nacked (nothing decides this but the gate: the append cannot finish
// before the test releases it); an append that fails nacks the message and
// stores nothing; the redelivered copy is acked after its event is stored.
func TestRouterAcksOnlyOnceEventsAreStored(t *testing.T) {
	srv := embedded.RunT(t)
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	gate := &gatedStore{Store: client, entered: make(chan struct{}), release: make(chan error)}
	exec, err := aggregate.NewExecutor(gate, aggregate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Close() })
	cr, err := cqrs.NewCommandRouter(cqrs.RouterConfig{Executor: exec, Types: []aggregate.AnyType{Accounts}, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	sub := &handSubscriber{topics: map[string]chan *message.Message{}}
	cr.AddHandlers(router, sub)
	done := make(chan struct{})
	go func() {
		defer close(done)
		router.Run(context.Background())
	}()
	t.Cleanup(func() {
		router.Close()
		sub.Close()
		<-done
	})
	<-router.Running()

	id := newID("acked")
	stream := Accounts.StreamID(id)
	msg, err := cqrs.NewCommandMessage(Accounts, id, Deposit{Amount: 10})
	if err != nil {
		t.Fatal(err)
	}
	in := sub.ch(cqrs.DefaultTopic(Accounts.Category(), cqrs.PartitionOf(stream, 1)))
	wait := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: nothing within 30 s", what)
		}
	}
	stored := func() int64 {
		t.Helper()
		v, err := client.StreamVersion(context.Background(), stream)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	// First delivery: the append fails at the store.
	in <- msg
	wait("first append", gate.entered)
	select {
	case <-msg.Acked():
		t.Fatal("acked while its append was held")
	case <-msg.Nacked():
		t.Fatal("nacked while its append was held")
	default:
	}
	gate.release <- errors.New("injected: the store is down")
	select {
	case <-msg.Nacked():
	case <-msg.Acked():
		t.Fatal("acked although its append failed")
	case <-time.After(30 * time.Second):
		t.Fatal("neither acked nor nacked after a failed append")
	}
	if v := stored(); v != -1 {
		t.Fatalf("stream at version %d after a failed append", v)
	}

	// Redelivery: held, then stored, then acked.
	again := msg.Copy()
	in <- again
	wait("second append", gate.entered)
	select {
	case <-again.Acked():
		t.Fatal("acked while its append was held")
	default:
	}
	gate.release <- nil
	select {
	case <-again.Acked():
	case <-again.Nacked():
		t.Fatal("nacked although its append succeeded")
	case <-time.After(30 * time.Second):
		t.Fatal("not acked after its append")
	}
	if v := stored(); v != 0 {
		t.Fatalf("acked, but the stream is at version %d, want 0", v)
	}
}
