package sierradb

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// ClusterConfig describes a SierraDB cluster to a [Client] ([Config.Cluster]).
//
// SierraDB 0.3.1 reports nothing about its cluster to a client (no topology
// command; HELLO names only the node), so the client takes the cluster's
// shape from here and computes who holds each partition with the server's
// static rule ([ClusterConfig.Holders]). Which holder coordinates a
// partition is learnt by probing (see docs/cluster.md).
type ClusterConfig struct {
	// Nodes are the client addresses (host:port) of every node of the
	// cluster, in the order of their node index (sierradb's -i): Nodes[i]
	// is the node started with "-i i". Required.
	Nodes []string
	// ReplicationFactor is the nodes' replication.factor.
	// Default: min(len(Nodes), 3), the server's default.
	ReplicationFactor int
	// Buckets is the nodes' bucket.count. Default: 4, the server's.
	Buckets int
	// Partitions is the nodes' partition.count. Default: 0, asked once
	// with HELLO.
	Partitions int
	// ProbeInterval is how often the client probes which node coordinates
	// each partition, besides after every failure that may mean a change.
	// Subscriptions move to a new coordinator at the latest one interval
	// after the probe sees it. Default: 2s.
	ProbeInterval time.Duration
	// ProbeTimeout bounds one probe of one partition on one node. A node
	// that does not answer in time is not taken as the coordinator.
	// Default: 2s.
	ProbeTimeout time.Duration
	// FailoverTimeout bounds how long a call keeps trying other nodes
	// after failures, on top of the caller's context. It should exceed
	// SierraDB's 10 s write timeout plus its 6 s heartbeat timeout, the
	// time a cluster takes to replace a coordinator that is cut off.
	// Default: 30s.
	FailoverTimeout time.Duration
	// NodeDownFor is how long a node whose connection failed is tried
	// only when no other node is left. Default: 1s.
	NodeDownFor time.Duration
}

func (c *ClusterConfig) setDefaults() {
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = min(len(c.Nodes), 3)
	}
	if c.Buckets == 0 {
		c.Buckets = 4
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = 2 * time.Second
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = 2 * time.Second
	}
	if c.FailoverTimeout == 0 {
		c.FailoverTimeout = 30 * time.Second
	}
	if c.NodeDownFor == 0 {
		c.NodeDownFor = time.Second
	}
}

// Validate reports every problem with the cluster description.
func (c ClusterConfig) Validate() error {
	var errs []error
	if len(c.Nodes) == 0 {
		errs = append(errs, errors.New("sierradb: ClusterConfig.Nodes is empty: list every node's client address, in node index order"))
	}
	seen := make(map[string]bool, len(c.Nodes))
	for i, a := range c.Nodes {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("sierradb: ClusterConfig.Nodes[%d] %q: %w", i, a, err))
		}
		if seen[a] {
			errs = append(errs, fmt.Errorf("sierradb: ClusterConfig.Nodes[%d] %q is listed twice", i, a))
		}
		seen[a] = true
	}
	if c.ReplicationFactor < 0 || (len(c.Nodes) > 0 && c.ReplicationFactor > len(c.Nodes)) {
		errs = append(errs, fmt.Errorf("sierradb: ClusterConfig.ReplicationFactor %d: want 1 to the number of nodes (%d), or 0 for the server's default",
			c.ReplicationFactor, len(c.Nodes)))
	}
	if c.Buckets < 0 || c.Buckets > 65535 {
		errs = append(errs, fmt.Errorf("sierradb: ClusterConfig.Buckets %d: want 1 to 65535, or 0 for the server's 4", c.Buckets))
	}
	if c.Partitions < 0 || c.Partitions > 65535 {
		errs = append(errs, fmt.Errorf("sierradb: ClusterConfig.Partitions %d: want 1 to 65535, or 0 to ask the server", c.Partitions))
	}
	d := c
	d.setDefaults()
	if len(c.Nodes) > 0 && c.ReplicationFactor >= 0 && c.Buckets >= 0 && len(c.Nodes) > d.Buckets+d.ReplicationFactor-1 {
		errs = append(errs, fmt.Errorf("sierradb: %d nodes with %d buckets and replication factor %d: the nodes from index %d on hold no partition "+
			"(SierraDB 0.3.1 refuses to run them); raise the nodes' bucket.count and ClusterConfig.Buckets",
			len(c.Nodes), d.Buckets, d.ReplicationFactor, d.Buckets+d.ReplicationFactor-1))
	}
	for name, v := range map[string]time.Duration{
		"ProbeInterval": c.ProbeInterval, "ProbeTimeout": c.ProbeTimeout,
		"FailoverTimeout": c.FailoverTimeout, "NodeDownFor": c.NodeDownFor,
	} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("sierradb: ClusterConfig.%s must not be negative", name))
		}
	}
	return errors.Join(errs...)
}

// Holders returns the indexes (into Nodes) of the nodes holding a replica
// of partition p, first replica first, by SierraDB 0.3.1's static rule: the
// partition is in bucket p mod Buckets, whose replicas are the nodes
// bucket mod N, bucket mod N + 1, … (ReplicationFactor of them, wrapping
// around). Defaults apply to unset fields. Nothing moves partitions at run
// time: a dead node's partitions are not re-replicated
// (TestFactsFiveNodes/OwnershipMatchesStaticAssignment pins the rule).
func (c ClusterConfig) Holders(p uint16) []int {
	c.setDefaults()
	n := len(c.Nodes)
	if n == 0 {
		return nil
	}
	first := int(p) % c.Buckets % n
	out := make([]int, 0, c.ReplicationFactor)
	for k := range c.ReplicationFactor {
		out = append(out, (first+k)%n)
	}
	return out
}
