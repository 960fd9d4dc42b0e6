// Package clustertest holds esmill's tests on real clusters: the
// cluster-aware SierraDB client, the projection runner and the Pub/Sub
// adapter on SierraDB clusters of 3 and 5 nodes (started by
// internal/sierracluster in network namespaces, with nodes SIGKILLed,
// restarted, cut off and healed under load), and the command path on a
// Redis Cluster (internal/rediscluster) with a master SIGKILLed mid-run.
//
// The SierraDB cluster tests need root and run only with
// ESMILL_CLUSTER_TESTS=1, as .ci/run does; docs/cluster.md records what
// they establish.
package clustertest
