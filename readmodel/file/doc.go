// Package file is a [readmodel.Store] that keeps each projection in one
// file: its read model (any value of type M that encodes to JSON or CBOR),
// its checkpoints and its parked events. Every commit writes the whole
// file anew and replaces the old one atomically: a temporary file in the
// same directory, fsync, rename, fsync of the directory. A crash leaves
// either the old file or the new one, never a torn one (tested: TestFaultInjectionNeverTearsTheFile, TestCrash), so the read model
// and the checkpoint always agree. Because a commit replaces the whole
// model, a transaction commits only if no other transaction of the
// projection committed since it began; the loser gets
// readmodel.ErrCheckpointConflict.
//
// The store takes an exclusive lock (flock) on "<projection>.lock" when it
// first touches a projection and holds it until [Store.Close]: a second
// process, or a second Store over the same directory, gets
// [readmodel.ErrCheckpointConflict] instead of advancing the projection
// too. The lock dies with the process. Other processes that only read the
// model read the file itself; it is always complete.
//
// Because each commit rewrites the model, the file store suits read models
// of up to a few megabytes; batch size trades commit cost against
// latency.
package file
