// Package redisbus makes esmill's Redis-backed parts survive a Redis
// Cluster failover: the Watermill Redis Streams bus (commands and
// replies), the Redis dedup store, the Redis rate limiter and the Redis
// lease store.
//
// Two things stand between a Redis Cluster and a bus that loses no
// acknowledged command when a master dies (docs/cluster.md):
//
//   - go-redis's ClusterClient reloads its slot map only after a MOVED or
//     ASK reply or once the map is older than ClusterStateReloadInterval
//     (default 60 s); right after a failover, commands for the dead
//     master's slots fail with "connection refused" until then.
//     [NewClusterClient] sets a short interval and reloads the map after
//     every connection error.
//   - Replication is asynchronous: a message acknowledged by a master that
//     dies before its replica has it is lost. [DurablePublisher] wraps a
//     publisher whose topics are Redis keys (watermill-redisstream) and
//     returns from Publish only once the replicas of the topic's master
//     have the message (WAIT).
//
// Every multi-key operation of esmill's Redis stores already stays in one
// slot (the lease store puts each group under one hash tag; the dedup
// store and the rate limiter use one key per operation).
package redisbus
