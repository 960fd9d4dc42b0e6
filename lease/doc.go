// Package lease divides the partitions of a group among the live instances
// of that group, one owner per partition, under leases that expire.
//
// Command routers (package cqrs) and projection runners (package
// readmodel) use it when several processes serve one workload: each
// partition is worked on by at most one live instance at any moment, and
// by exactly one once the group is stable.
//
// A [Member] joins a group in a [Store] (Redis with [NewRedisStore], the
// projection stores of package readmodel, or [NewMemoryStore] inside one
// process). It renews its membership and its leases every
// [Config.RenewInterval], computes which partitions it should own from the
// live members (rendezvous hashing: a join or a departure moves only the
// partitions that must move), gives up those it should no longer own and
// takes those that are free. Its [Handler] hears of every change:
// [Handler.Assigned] when a partition becomes its own, [Handler.Revoked]
// when it must stop working on one; a partition is released in the store
// only after Revoked has returned, so that its next owner never overlaps
// with the work of the last.
//
// A store that implements [GroupReader] (both of this package's do) tells a
// sender the partition count of a group's live members without joining.
//
// # Fencing
//
// Every grant of a partition to a new holder carries a token that is
// larger than every token granted for that partition before ([Grant]).
// A member counts its lease valid until the local time at which it asked
// for it plus the TTL, less a safety margin ([Config.StopMargin]): the
// store's own expiry (on the store's clock) cannot come earlier. When a
// renewal fails, the member revokes the partition at that local deadline,
// so an instance cut off from the store stops before another can take
// over. [Member.Valid] tells whether a partition is still held with a
// given token; callers check it before each unit of work, and stores
// that can (a checkpoint compare-and-set, an expected version) reject
// the writes of a holder that paused past its lease.
//
// # Timing
//
// A member that joins is given its share within about two renew intervals
// (the others see it at their next renewal and release; it takes at its
// next). A member that dies without leaving loses its membership and its
// leases after the TTL; the others take them over at their next renewal
// after that. With the defaults (TTL 10s, renewal every 2s) a partition is
// without an owner for at most about 12s after a crash, and moves within
// about 4s on a join or a graceful leave (tested: TestMemberRebalance,
// TestMemberCrashTakeover).
package lease
