//go:build linux

package sierracluster

import (
	"encoding/binary"
	"fmt"

	"github.com/google/uuid"
)

// streamNamespace is SierraDB's UUIDv5 namespace for stream partition keys.
var streamNamespace = uuid.MustParse("219bd637-e279-53e9-9e2b-eabe5d9120cc")

// PartitionKey is the partition key SierraDB derives for a stream written
// without PARTITION_KEY.
func PartitionKey(stream string) uuid.UUID { return uuid.NewSHA1(streamNamespace, []byte(stream)) }

// PartitionOf is the partition of a partition key.
func PartitionOf(key uuid.UUID, partitions int) int {
	hash := uint16(binary.BigEndian.Uint64(key[8:16]) >> 46)
	return int(hash) % partitions
}

// StreamIn returns the first stream named prefix-0, prefix-1, … that falls
// into partition p, so a test can aim at one partition.
func (c *Cluster) StreamIn(prefix string, p int) string {
	parts := c.cfg.EffectivePartitions()
	for i := 0; ; i++ {
		s := fmt.Sprintf("%s-%d", prefix, i)
		if PartitionOf(PartitionKey(s), parts) == p {
			return s
		}
	}
}

// Owners returns the indexes of the nodes that hold partition p, in
// SierraDB 0.3.1's static assignment: the partition's bucket is p mod
// bucket.count; its first replica is node bucket mod N, the others are the
// next nodes in index order, ReplicationFactor in all. Which of the live
// owners coordinates writes is decided at run time (the one alive longest;
// see docs/cluster.md). TestOwnershipMatchesStaticAssignment checks this
// against the servers.
func (c *Cluster) Owners(p int) []int {
	n := c.cfg.Nodes
	rf := c.cfg.EffectiveReplicationFactor()
	bucket := p % c.cfg.EffectiveBuckets()
	first := bucket % n
	owners := make([]int, 0, rf)
	for k := range rf {
		owners = append(owners, (first+k)%n)
	}
	return owners
}

// Holds reports whether node i holds a replica of partition p.
func (c *Cluster) Holds(i, p int) bool {
	for _, o := range c.Owners(p) {
		if o == i {
			return true
		}
	}
	return false
}
