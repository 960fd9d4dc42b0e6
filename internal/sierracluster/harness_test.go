package sierracluster

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// TestStartThreeNodes starts a 3-node cluster and checks that every node
// holds every partition (replication factor 3 on 3 nodes).
func TestStartThreeNodes(t *testing.T) {
	c := Start(t, Config{Nodes: 3})
	t.Logf("3 nodes formed in %s", c.FormedIn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for p := range 32 {
		if got := len(c.Owners(p)); got != 3 {
			t.Fatalf("partition %d has %d owners, want 3", p, got)
		}
	}
	conn, err := c.Node(0).Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	v, err := conn.Do(ctx, "EAPPEND", "harness-1", "Probed", "EXPECTED_VERSION", "empty")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("append: %v", v)
	for _, n := range c.Nodes() {
		conn, err := n.Dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		v, err := conn.Do(ctx, "ESCAN", "harness-1", "-", "+")
		conn.Close()
		t.Logf("node %d: %v %v", n.Index, v, err)
		_ = strconv.Itoa
	}
}
