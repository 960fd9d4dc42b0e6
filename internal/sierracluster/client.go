//go:build linux

package sierracluster

import (
	"time"

	"github.com/esmill/esmill/sierradb"
)

// ClientConfig describes the cluster to esmill's cluster-aware client
// (sierradb.Config.Cluster): every node's forwarded address in index order
// and the shape the nodes run with. The probe interval is short, so that
// tests see a coordinator change soon after it happens.
func (c *Cluster) ClientConfig() *sierradb.ClusterConfig {
	return &sierradb.ClusterConfig{
		Nodes:             c.Addrs(),
		ReplicationFactor: c.cfg.EffectiveReplicationFactor(),
		Buckets:           c.cfg.EffectiveBuckets(),
		Partitions:        c.cfg.EffectivePartitions(),
		ProbeInterval:     500 * time.Millisecond,
	}
}
