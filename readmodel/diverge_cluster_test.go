package readmodel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/sierradb/pubsub"
)

// A projection on a cluster client whose partition moves to a coordinator
// that lacks the events already applied stops with one error that speaks
// every package's vocabulary: a *readmodel.DivergedError wrapping the
// cluster subscription's *sierradb.DivergedError, matched by
// readmodel.ErrDiverged, sierradb.ErrDiverged and pubsub.ErrDiverged
// (one value). Three embedded servers stand for a cluster with
// replication factor 2 that does not replicate: when a partition's
// coordinator dies, the other holder has none of its events, as a real
// SierraDB 0.3.1 replica that missed writes (docs/cluster.md).
func TestDivergedOneVocabulary(t *testing.T) {
	if readmodel.ErrDiverged != sierradb.ErrDiverged || pubsub.ErrDiverged != sierradb.ErrDiverged {
		t.Fatal("readmodel.ErrDiverged, pubsub.ErrDiverged and sierradb.ErrDiverged are not one value")
	}
	var srvs []*embedded.Server
	var addrs []string
	for range 3 {
		srv := embedded.RunT(t)
		srvs = append(srvs, srv)
		addrs = append(addrs, srv.Addr())
	}
	c, err := sierradb.New(sierradb.Config{ReconnectMinBackoff: 5 * time.Millisecond, Cluster: &sierradb.ClusterConfig{
		Nodes: addrs, ReplicationFactor: 2, Buckets: 3, ProbeInterval: 50 * time.Millisecond, FailoverTimeout: time.Second,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	st := newStore()
	r := divRunner(t, c, st, readmodel.StopDiverged)
	pos := appendCredits(t, c, 0, 30)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.WaitFor(ctx, pos...); err != nil {
		t.Fatal(err)
	}
	idPart := -1
	for ev, err := range c.ScanAll(ctx, sierradb.ServerIDStream, 0) {
		if err != nil {
			t.Fatal(err)
		}
		idPart = int(ev.PartitionID)
	}
	if idPart < 0 {
		t.Fatal("the runner recorded no server identity")
	}
	coords := c.ClusterStats().Coordinators
	victim := -1
	for _, p := range pos {
		if n := coords[p.Partition]; n != coords[idPart] {
			victim = n
			break
		}
	}
	if victim < 0 {
		t.Fatalf("every partition written is coordinated by the node holding the server identity: %v", coords)
	}
	srvs[victim].Close()
	waitDone(t, r)
	err = r.Err()
	var div *readmodel.DivergedError
	var sdiv *sierradb.DivergedError
	if !errors.As(err, &div) || !errors.As(err, &sdiv) || !errors.Is(err, readmodel.ErrDiverged) ||
		!errors.Is(err, sierradb.ErrDiverged) || !errors.Is(err, pubsub.ErrDiverged) {
		t.Fatalf("runner ended with %v (%T), want a readmodel.DivergedError wrapping a sierradb.DivergedError", err, err)
	}
	if len(div.Partitions) != 1 || div.Partitions[0].Partition != sdiv.Partition || coords[sdiv.Partition] != victim {
		t.Fatalf("diverged %+v, cluster error %+v; node %d died", div.Partitions, sdiv, victim)
	}
	if s := r.Status(); len(s.Diverged()) != 1 {
		t.Fatalf("status: %s", s)
	}
	t.Logf("node %d died: %v", victim, err)
}
