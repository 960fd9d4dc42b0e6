package sierradb

import (
	"slices"
	"strings"
	"testing"
)

func TestClusterHolders(t *testing.T) {
	five := ClusterConfig{Nodes: []string{"a:1", "b:1", "c:1", "d:1", "e:1"}, ReplicationFactor: 3}
	tests := []struct {
		cfg  ClusterConfig
		p    uint16
		want []int
	}{
		{five, 0, []int{0, 1, 2}},
		{five, 1, []int{1, 2, 3}},
		{five, 3, []int{3, 4, 0}},
		{five, 4, []int{0, 1, 2}}, // bucket 0 again
		{five, 31, []int{3, 4, 0}},
		{ClusterConfig{Nodes: []string{"a:1", "b:1", "c:1"}}, 7, []int{0, 1, 2}}, // bucket 3 mod 3 = 0
		{ClusterConfig{Nodes: []string{"a:1", "b:1", "c:1"}}, 5, []int{1, 2, 0}},
		{ClusterConfig{Nodes: []string{"a:1"}}, 9, []int{0}},
	}
	for _, tt := range tests {
		if got := tt.cfg.Holders(tt.p); !slices.Equal(got, tt.want) {
			t.Errorf("%d nodes, partition %d: holders %v, want %v", len(tt.cfg.Nodes), tt.p, got, tt.want)
		}
	}
	// With 5 nodes, RF 3 and 4 buckets the nodes hold 16, 16, 24, 24 and
	// 16 of 32 partitions (TestStartFiveNodesRF3 measured the same).
	held := make([]int, 5)
	for p := range uint16(32) {
		for _, h := range five.Holders(p) {
			held[h]++
		}
	}
	if !slices.Equal(held, []int{16, 16, 24, 24, 16}) {
		t.Errorf("partitions held per node %v", held)
	}
}

func TestClusterConfigValidate(t *testing.T) {
	err := Config{Addr: "x:1", Cluster: &ClusterConfig{
		Nodes: []string{"a:1", "a:1", "nope"}, ReplicationFactor: 9, ProbeInterval: -1,
	}}.Validate()
	if err == nil {
		t.Fatal("invalid cluster config accepted")
	}
	for _, want := range []string{"both Addr and Cluster", "listed twice", "Nodes[2]", "ReplicationFactor 9", "ProbeInterval"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := (Config{Cluster: &ClusterConfig{}}).Validate(); err == nil || !strings.Contains(err.Error(), "Nodes is empty") {
		t.Errorf("empty nodes: %v", err)
	}
	seven := make([]string, 7)
	for i := range seven {
		seven[i] = "n" + string(rune('a'+i)) + ":1"
	}
	if err := (Config{Cluster: &ClusterConfig{Nodes: seven}}).Validate(); err == nil || !strings.Contains(err.Error(), "hold no partition") {
		t.Errorf("7 nodes on 4 buckets: %v", err)
	}
	if err := (Config{Cluster: &ClusterConfig{Nodes: []string{"a:1", "b:1", "c:1"}}}).Validate(); err != nil {
		t.Errorf("valid: %v", err)
	}
}
