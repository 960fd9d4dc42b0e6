//go:build linux

package clustertest

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/memory"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/pubsub"
)

// counts is the projection's read model: how often each event was applied.
type counts map[uuid.UUID]int

type projTx = *memory.Tx[counts]

// consumers are a projection (readmodel runner over all partitions) and a
// Pub/Sub consumer group (a category topic, every partition), each
// counting what it was given per event id.
type consumers struct {
	client *sierradb.Client
	prefix string
	store  *memory.Store[counts]
	runner *readmodel.Runner[projTx]

	sub    *pubsub.Subscriber
	mu     sync.Mutex
	got    map[uuid.UUID]int
	subErr error
	done   chan struct{}
}

// startConsumers starts both consumers on client for the streams whose
// ids start with prefix + "-".
func startConsumers(t *testing.T, client *sierradb.Client, prefix string) *consumers {
	t.Helper()
	cs := &consumers{client: client, prefix: prefix, got: map[uuid.UUID]int{}, done: make(chan struct{})}
	cs.store = memory.New(memory.Config[counts]{New: func() counts { return counts{} }, Clone: maps.Clone[counts]})
	r, err := readmodel.New(readmodel.Config[projTx]{
		Name:   "counts",
		Client: client,
		Store:  cs.store,
		Handlers: []readmodel.Handler[projTx]{
			readmodel.OnOther(func(ctx context.Context, tx projTx, ev sierradb.Event, m readmodel.Meta) error {
				if strings.HasPrefix(ev.StreamID, prefix+"-") {
					(*tx.Model())[ev.ID]++
				}
				return nil
			}),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	cs.runner = r
	t.Cleanup(func() { r.Close() })

	sub, err := pubsub.NewSubscriber(pubsub.SubscriberConfig{Client: client, ConsumerGroup: "counter"})
	if err != nil {
		t.Fatal(err)
	}
	cs.sub = sub
	// The subscription lives as long as ctx: until Close.
	msgs, err := sub.Subscribe(context.Background(), prefix+pubsub.CategorySuffix)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(cs.done)
		for msg := range msgs {
			id, err := uuid.Parse(msg.Metadata.Get(esmill.MetaEventID))
			cs.mu.Lock()
			if err != nil {
				cs.subErr = fmt.Errorf("message %s without an event id: %w", msg.UUID, err)
			}
			cs.got[id]++
			cs.mu.Unlock()
			msg.Ack()
		}
	}()
	t.Cleanup(func() {
		sub.Close()
		<-cs.done
	})
	return cs
}

// tally compares what each consumer was given with the readable events:
// lost are readable events never given, dup events given more than once,
// gone events given that are no longer readable.
type tally struct {
	Lost, Dup, Gone, Given int
}

func (t tally) String() string {
	return fmt.Sprintf("%d events given, %d lost, %d given twice or more, %d given but no longer readable", t.Given, t.Lost, t.Dup, t.Gone)
}

func compare(given map[uuid.UUID]int, readable map[uuid.UUID]sierradb.Event) tally {
	var t tally
	for id, n := range given {
		t.Given += n
		if n > 1 {
			t.Dup++
		}
		if _, ok := readable[id]; !ok {
			t.Gone++
		}
	}
	for id := range readable {
		if given[id] == 0 {
			t.Lost++
		}
	}
	return t
}

// settle waits until both consumers have been given every readable event
// (or until timeout) and returns their tallies.
func (cs *consumers) settle(t *testing.T, readable map[uuid.UUID]sierradb.Event, timeout time.Duration) (proj, group tally) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	deadline := time.Now().Add(timeout)
	for {
		var applied counts
		cs.store.Read("counts", func(m counts) { applied = maps.Clone(m) })
		cs.mu.Lock()
		given := maps.Clone(cs.got)
		subErr := cs.subErr
		cs.mu.Unlock()
		if subErr != nil {
			t.Fatal(subErr)
		}
		proj, group = compare(applied, readable), compare(given, readable)
		if proj.Lost == 0 && group.Lost == 0 {
			return proj, group
		}
		if err := cs.runner.Err(); err != nil {
			t.Logf("projection ended: %v", err)
			return proj, group
		}
		if time.Now().After(deadline) {
			return proj, group
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}
