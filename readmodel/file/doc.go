// Package file is a [readmodel.Store] that keeps each projection in one
// file: its read model (any value of type M that encodes to JSON or CBOR),
// its checkpoints, its parked events and the identity of the SierraDB
// server it follows. Every commit writes the whole file anew and replaces
// the old one atomically: a temporary file in the same directory, fsync,
// rename, fsync of the directory. A crash leaves either the old file or
// the new one, never a torn one, so the read model and the checkpoint
// always agree.
//
// # Several stores and processes on one directory
//
// Stores in one process or in several processes of one machine may share a
// directory, and so a projection: several instances of it dividing the
// partitions (readmodel.Config.Leases; [Store.Leases] keeps the leases in
// the same directory). A transaction takes an exclusive lock (flock) on
// "<projection>.lock" in Begin and holds it until Commit or Rollback, so
// transactions of one projection run one at a time across processes;
// readers (Checkpoints, Parked, [Store.Read]) take it shared. Each commit
// first names itself in "<projection>.commit"; a store reads the
// projection's file again only when that name differs from its copy's, so
// it always starts from the latest commit of any process. Because a commit
// replaces the whole model, it also checks the checkpoints
// (compare-and-set): a transaction whose advances do not start from the
// stored checkpoints fails with readmodel.ErrCheckpointConflict. Locks die
// with their process (tested: TestSharedDirectory, and with processes
// SIGKILLed at random, TestSharedCrash in the test module). Processes
// that only read the model may read the file itself; it is always
// complete.
//
// Because each commit rewrites the model, the file store suits read models
// of up to a few megabytes; batch size trades commit cost against
// latency.
package file
