//go:build linux

package conformance_test

import (
	"context"
	"testing"
	"time"

	"github.com/esmill/esmill/internal/sierracluster"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/conformance"
)

// TestCluster runs the suite against a 3-node SierraDB 0.3.1 cluster (RF
// 3): on the node that coordinates every partition, where every case holds
// as on a server alone, and on a plain replica, where the differences are
// named cases. It needs ESMILL_CLUSTER_TESTS=1 and root (see
// internal/sierracluster).
func TestCluster(t *testing.T) {
	c := sierracluster.Start(t, sierracluster.Config{Nodes: 3})
	client, err := sierradb.New(sierradb.Config{Cluster: c.ClientConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := client.PartitionSequences(ctx, []uint16{0}); err != nil {
		t.Fatal(err)
	}
	coord := client.ClusterStats().Coordinators
	for _, n := range coord {
		if n != coord[0] {
			t.Fatalf("the partitions have several coordinators: %v", coord)
		}
	}
	t.Run("coordinator", func(t *testing.T) {
		conformance.Run(t, conformance.Config{Addr: c.Node(coord[0]).Addr(), Server: conformance.Real, Role: conformance.Coordinator})
	})
	t.Run("replica", func(t *testing.T) {
		conformance.Run(t, conformance.Config{Addr: c.Node((coord[0] + 1) % 3).Addr(), Server: conformance.Real, Role: conformance.Replica})
	})
}
