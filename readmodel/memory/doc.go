// Package memory is a [readmodel.Store] that keeps each projection's read
// model, checkpoints and parked events in memory. A batch transaction works
// on a copy of the model, which replaces the committed one, together with
// the checkpoints, under one lock. A transaction commits only if no other
// transaction of the projection committed since it began (and its
// checkpoint advances match); the loser gets ErrCheckpointConflict. Nothing survives the process: a runner
// on a new store replays from the start. Use it for tests, for small
// read models rebuilt at every start, and as the reference of the other
// stores.
package memory
