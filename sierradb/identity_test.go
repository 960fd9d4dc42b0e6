package sierradb_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/sierradb/sierradbtest"
)

// Racing callers agree on one identity, and later calls return it.
func TestServerIDConcurrentCallers(t *testing.T) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			addr := tg.addr(t)
			var wg sync.WaitGroup
			ids := make([]string, 6)
			errs := make([]error, len(ids))
			for i := range ids {
				c := newClient(t, addr) // a connection each: a real race
				wg.Go(func() { ids[i], errs[i] = c.ServerID(ctxT(t)) })
			}
			wg.Wait()
			for i := range ids {
				if errs[i] != nil {
					t.Fatal(errs[i])
				}
				if ids[i] == "" || ids[i] != ids[0] {
					t.Fatalf("callers got %q, want one identity", ids)
				}
			}
			again, err := newClient(t, addr).ServerID(ctxT(t))
			if err != nil || again != ids[0] {
				t.Fatalf("a later call: %q, %v; want %q", again, err, ids[0])
			}
		})
	}
}

// The identity lasts as long as the server's data: a durable server
// restarted on its data keeps it (while HELLO's peer id changes), on the
// embedded server and on the real SierraDB.
func TestServerIDSurvivesRestart(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		dir := t.TempDir()
		srv, err := embedded.Start(embedded.Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		id := serverID(t, srv.Addr())
		addr := srv.Addr()
		srv.Close()
		again, err := embedded.Start(embedded.Config{Dir: dir, Addr: addr})
		if err != nil {
			t.Fatal(err)
		}
		defer again.Close()
		if got := serverID(t, again.Addr()); got != id {
			t.Fatalf("after a restart on its data: %q, want %q", got, id)
		}
	})
	t.Run("sierradb", func(t *testing.T) {
		if _, err := sierradbtest.Binary(); err != nil {
			sierradbtest.Unavailable(t, "%v", err)
		}
		dir := t.TempDir()
		srv, err := sierradbtest.Start(ctxT(t), sierradbtest.Config{Dir: dir, Partitions: 8})
		if err != nil {
			t.Fatal(err)
		}
		id := serverID(t, srv.Addr())
		peer := srv.PeerID()
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		again, err := sierradbtest.Start(ctxT(t), sierradbtest.Config{Dir: dir, Addr: srv.Addr(), Partitions: 8})
		if err != nil {
			t.Fatal(err)
		}
		defer again.Close()
		if again.PeerID() == peer {
			t.Fatal("the restarted server kept its peer id; the test means to show that the peer id changes")
		}
		if got := serverID(t, again.Addr()); got != id {
			t.Fatalf("after a restart on its data: %q, want %q", got, id)
		}
	})
}

// Two servers, and a memory-mode server before and after a restart, have
// different identities.
func TestServerIDDiffersAcrossServers(t *testing.T) {
	a, b := embedded.RunT(t), embedded.RunT(t)
	idA, idB := serverID(t, a.Addr()), serverID(t, b.Addr())
	if idA == idB {
		t.Fatalf("two servers share the identity %q", idA)
	}
	addr := a.Addr()
	a.Close()
	restarted, err := embedded.Start(embedded.Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer restarted.Close()
	if got := serverID(t, addr); got == idA {
		t.Fatalf("a memory-mode server kept its identity %q over a restart that lost its events", got)
	}
}

func serverID(t *testing.T, addr string) string {
	t.Helper()
	c := newClient(t, addr)
	id, err := c.ServerID(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Resume is called with the positions a lost subscription would resume
// from; its error ends the subscription.
func TestSubscribeResumeHook(t *testing.T) {
	srv := embedded.RunT(t)
	c := newClient(t, srv.Addr())
	ctx := ctxT(t)
	stream := streamName("resume")
	res, err := c.Append(ctx, sierradb.NewEvent{StreamID: stream, Name: "E", ExpectedVersion: sierradb.ExpectEmpty})
	if err != nil {
		t.Fatal(err)
	}
	calls := make(chan map[uint16]uint64, 10)
	refuse := errors.New("refused by the hook")
	var mu sync.Mutex
	hookErr := error(nil)
	sub, err := c.SubscribePartitions(ctx, sierradb.PartitionSubscription{
		Partitions: []uint16{res.PartitionID},
		Resume: func(ctx context.Context, next map[uint16]uint64) error {
			calls <- next
			mu.Lock()
			defer mu.Unlock()
			return hookErr
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ev := <-sub.Events()
	sub.Ack(ev)
	srv.DropConnections()
	select {
	case next := <-calls:
		if next[res.PartitionID] != res.PartitionSequence+1 {
			t.Fatalf("Resume got %v, want partition %d at %d", next, res.PartitionID, res.PartitionSequence+1)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Resume was not called after the connection dropped")
	}
	// The subscription resumed: it delivers the next event.
	if _, err := c.Append(ctx, sierradb.NewEvent{StreamID: stream, Name: "E", ExpectedVersion: sierradb.ExpectVersion(0)}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-sub.Events():
		if ev.StreamVersion != 1 {
			t.Fatalf("after resuming: version %d, want 1", ev.StreamVersion)
		}
		sub.Ack(ev)
	case <-time.After(10 * time.Second):
		t.Fatal("no event after resuming")
	}
	mu.Lock()
	hookErr = refuse
	mu.Unlock()
	srv.DropConnections()
	select {
	case <-sub.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the subscription went on after Resume refused")
	}
	if _, ok := <-sub.Events(); ok {
		t.Fatal("an event after Resume refused")
	}
	if !errors.Is(sub.Err(), refuse) {
		t.Fatalf("Err = %v, want the hook's error", sub.Err())
	}
}
