// Package scaleout runs command routers in several processes against one
// Redis and one SierraDB, for the tests and benchmarks that hold esmill to
// its scale-out guarantees: a worker (a command router in a lease group,
// reading its partitions with redispart), a sender of numbered commands,
// and the check of what the streams hold afterwards.
//
// Every command carries a per-entity sequence number. The entity appends
// it as it comes, and a strict command (every fifth) is rejected unless it
// is the next one: so a command run out of order, run twice, lost, or
// answered from a stale cache shows in the entity's stream or in its reply
// (Verify counts each).
package scaleout
