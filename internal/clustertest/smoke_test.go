//go:build linux

package clustertest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/esmill/esmill/internal/sierracluster"
	"github.com/esmill/esmill/sierradb"
)

func newClusterClient(t *testing.T, c *sierracluster.Cluster) *sierradb.Client {
	t.Helper()
	cl, err := sierradb.New(sierradb.Config{Cluster: c.ClientConfig(), ReconnectMinBackoff: 10 * time.Millisecond, ReconnectMaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func TestSmoke(t *testing.T) {
	c := sierracluster.Start(t, sierracluster.Config{Nodes: 3})
	cl := newClusterClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sub, err := cl.SubscribePartitions(ctx, sierradb.PartitionSubscription{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	t.Logf("coordinators %v", cl.ClusterStats().Coordinators)
	for i := range 64 {
		s := fmt.Sprintf("smoke-%d", i)
		if _, err := cl.Append(ctx, sierradb.NewEvent{StreamID: s, Name: "E", ExpectedVersion: sierradb.ExpectEmpty}); err != nil {
			t.Fatal(err)
		}
		for {
			v, err := cl.StreamVersion(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if v == 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	seen := map[string]int{}
	for len(seen) < 64 {
		select {
		case ev := <-sub.Events():
			seen[ev.StreamID]++
			sub.Ack(ev)
		case <-time.After(10 * time.Second):
			t.Fatalf("seen %d", len(seen))
		}
	}
	coord := cl.ClusterStats().Coordinators[0]
	t.Logf("killing node %d", coord)
	c.Node(coord).Kill()
	start := time.Now()
	for i := range 64 {
		s := fmt.Sprintf("smoke-%d", i)
		if _, err := cl.Append(ctx, sierradb.NewEvent{StreamID: s, Name: "E", ExpectedVersion: sierradb.ExpectVersion(0)}); err != nil {
			t.Fatalf("after kill: %v", err)
		}
		if i == 0 {
			t.Logf("first append after kill in %v", time.Since(start))
		}
	}
	for len(seen) < 64 || sum(seen) < 128 {
		select {
		case ev := <-sub.Events():
			seen[ev.StreamID]++
			sub.Ack(ev)
		case <-time.After(10 * time.Second):
			t.Fatalf("seen %d events: %v, err %v", sum(seen), seen, sub.Err())
		}
	}
	t.Logf("moves %d, stats %+v", sub.Moves(), cl.ClusterStats())
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
