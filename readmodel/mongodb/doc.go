// Package mongodb is a [readmodel.Store] on MongoDB through the official
// driver (go.mongodb.org/mongo-driver/v2). It is built for servers
// without multi-document transactions (a standalone mongod, FerretDB),
// which is what its tests run on (FerretDB, in the test/ module: the
// checkpoint contract and SIGKILL crash tests), and for servers with them
// (replica sets, sharded clusters). The transaction mode is NOT tested:
// no MongoDB server with transactions can run in this project's CI (there
// is no MongoDB server package to install and no container registry, and
// FerretDB has no transactions), so that mode's behaviour is a design
// intent, not a tested guarantee.
//
// Handlers write the read model through a [*Handle], bound to the position
// (partition and sequence) of the event being applied. Every document
// written through it records, per projection and partition, the last
// position it has applied, in the field
//
//	_esmill.<projection>.p<partition>: <sequence>
//
// and every write is filtered so that it only touches documents whose
// recorded position for that partition is below the event's (or absent).
//
// # Correctness without transactions
//
// Without transactions, a batch's writes are applied one by one as the
// handlers make them, and the checkpoint document is updated after the
// batch with a compare-and-set on its previous value. A crash, a failed
// handler or a failed checkpoint write may thus leave writes of events that
// the checkpoint does not cover; the next run replays those events. The
// replay changes nothing twice, because:
//
//  1. Events of one partition are applied in sequence order, by one runner
//     (the compare-and-set on the checkpoint stops a second one at its
//     first commit; see also point 5).
//  2. A write of event (p, s) to document D is one single-document
//     operation, atomic in MongoDB, that both applies the change and sets
//     D's position for p to s, and only if D's position for p is below s.
//  3. So if D's position for p is at least s, the write of (p, s) to D was
//     already applied (by this event, or D was since written by a later
//     event of p, which in the original run came after this one); the
//     replayed write matches nothing and changes nothing. Otherwise it was
//     not applied, and the replay applies it now.
//  4. Upserts and replacements must name the document by _id, so that a
//     guarded upsert that matches nothing because the document is already
//     past s runs into the _id's unique index (duplicate key), which the
//     handle reports as "already applied", instead of inserting a second
//     document. Inserts must carry an _id for the same reason.
//  5. Checkpoint advances are compare-and-sets resting on a unique _id
//     (see linkDoc), atomic on every server: of two runners of one
//     projection, the second stops with ErrCheckpointConflict at its
//     first commit. Within one process, the store also runs one batch of
//     a projection at a time, so two runners sharing a Store never
//     interleave their writes (tested: TestMongoDBContract).
//
// Limits, which the handle cannot see past:
//   - Handlers must write only through the handle. A write through the
//     driver directly is neither guarded nor positioned.
//   - A write whose effect depends on other documents' state read in the
//     handler (read-modify-write across documents) may read state that a
//     replay has already moved on; guarded writes then skip rather than
//     apply twice, but the values they would have computed are not
//     recomputed. Prefer update operators ($inc, $set) that do not need a
//     read.
//   - An event whose handler fails after some of its writes (and that is
//     then parked) keeps those writes: without transactions there is no
//     undo.
//   - A deleted document loses its positions; replaying an earlier event
//     that upserts it recreates it until the replay reaches the delete
//     again. The read model is correct when the replay has caught up to
//     where the crash happened, not at every instant in between.
//   - Two runner processes of one projection at once (a deployment
//     mistake that the checkpoint compare-and-set ends at the second one's
//     first commit) are safe on MongoDB, whose single-document updates are
//     atomic, so a guarded write is applied by exactly one of them. On
//     servers whose filtered updates are not atomic under concurrency
//     (FerretDB 1.x) two processes could, until then, both apply a write:
//     run one runner process per projection there.
//   - Positions are per partition: documents written from several
//     partitions must receive updates whose order does not matter, which
//     is true of any projection, since SierraDB orders events only within
//     a partition.
//
// # Replayed parked events
//
// A parked event replayed (readmodel.Admin.Replay) or released after the
// event it was held behind sits below its partition's position: documents
// written since by later events of the partition would make the guard
// above skip its writes. The handle of an event taken off the parked list
// in the transaction (Tx.Unpark) therefore guards with a field of the
// replay's own, _esmill.<projection>.r<partition>_<sequence>: a replay that
// is repeated after a crash, or by a second process, applies each write
// once. Without transactions the parked document is deleted at Commit,
// after the writes (the delete is the claim: of two replays only one
// deletes it); a crash between the writes and the delete leaves the event
// parked, and replaying it again changes nothing twice. A crash between the
// delete and the record of the resolution loses that record only.
//
// # With transactions
//
// When the server supports them (Config.Transactions Auto detects it with
// the hello command: a replica set or a mongos), each batch is meant to
// run in one multi-document transaction with the checkpoint update, so
// that nothing of a failed batch stays; the position guards are still
// written and checked in that mode. Untested, see above: on such a server
// the guards, which are tested, are what a user can rely on.
package mongodb
