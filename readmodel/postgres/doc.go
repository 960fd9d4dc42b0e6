// Package postgres is a [readmodel.Store] on PostgreSQL through pgx v5.
// Handlers write the read model through the batch's pgx.Tx; the same
// transaction moves the checkpoint and records parked events. The store
// creates its tables (checkpoints, parked events, active pointers) itself;
// many projections share them, keyed by projection name.
//
// # The guard against two runners
//
// Two runners of one projection must not both advance it. Two mechanisms
// see to it:
//
//   - Compare-and-set (correctness). Commit moves each partition's
//     checkpoint with UPDATE … WHERE sequence = <previous> (or an INSERT …
//     ON CONFLICT DO NOTHING for a first checkpoint) and requires every
//     row to be affected. Under READ COMMITTED a concurrent UPDATE of the
//     same row waits for the other transaction and then re-checks the
//     WHERE clause against the committed row, so of two transactions that
//     start from the same checkpoint exactly one commits; the other gets
//     [readmodel.ErrCheckpointConflict] and rolls back with all its
//     read-model writes. Each event is thus committed by at most one
//     runner, whatever the timing.
//   - A transaction-scoped advisory lock (fail early). Begin takes
//     pg_advisory_xact_lock on a key derived from the projection name,
//     waiting at most Config.LockWait (2 s). Batches of one projection
//     thus never run at once (tested: TestAdvisoryLock): a second runner waits for the first one's
//     batch, then fails on the compare-and-set, before its handlers have
//     waited on the first one's row locks (which could deadlock in the
//     user's tables); if the lock stays taken longer, Begin fails with
//     ErrCheckpointConflict. The lock ends with the transaction, also when
//     its connection dies, so a killed runner blocks its successor at most
//     until the server notices the closed connection.
//
// A runner that meets ErrCheckpointConflict reads the checkpoints again
// and goes on; it never exits because another runner exists (tested:
// TestContract, its TwoRunners case).
//
// # Instances sharing a projection
//
// Runners that share a projection's partitions (readmodel.Config.Leases,
// with the leases in the same database: [Store.Leases], tables
// <prefix>lease_members and <prefix>lease_owners, expiry on the server's
// clock) begin their batches with [Store.BeginPartitions], which takes an
// advisory lock per partition instead of the projection's: instances on
// different partitions commit in parallel, and the compare-and-set still
// fences an instance whose lease ran out. Handlers of different partitions
// that update shared rows can then meet in a deadlock; PostgreSQL aborts
// one transaction, which [Store.IsTransient] reports as transient, so the
// runner retries the batch without counting it as a failure of the event.
//
// # Queued writes
//
// A handler that calls tx.Exec costs a round trip per event. A handler
// that calls [Queue] instead queues its statement; the batch's queued
// statements go to the server in one pgx.Batch together with the
// checkpoint's compare-and-set, in the batch's transaction, so that they
// commit with the checkpoint or not at all, as the others do (tested:
// TestContractQueued, and the crash tests, whose PostgreSQL projection
// queues its writes). A queued statement that fails is reported as a
// readmodel.WriteError of the event that queued it, which the runner
// treats as that event's handler failure (tested:
// TestQueueFailureIsTheEventsFailure). Use Queue for writes whose result
// the handler need not read; any other use of the handle sends what is
// queued first, so reads see the batch's earlier writes. At batch 1000 a
// catch-up with queued statements is several times faster than one with
// tx.Exec (BENCHMARKS.md, "statements queued vs run one by one").
//
// The store also records the identity of the SierraDB server with the
// checkpoints (<prefix>servers, see readmodel.ServerRecorder).
package postgres
