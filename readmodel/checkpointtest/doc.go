// Package checkpointtest is the contract suite of [readmodel.Store]: every
// store (memory, file, sqlite, postgres, mongodb) runs it from its tests
// with a [Harness] that says how to make a store and how to read and write
// an integer in its read model.
//
// It checks the store on its own (checkpoints, atomicity with the read
// model, compare-and-set, parking, reset, the blue/green pointer,
// durability) and under a real [readmodel.Runner] fed by an embedded
// SierraDB (catch-up and restart, poison events, two runners of one
// projection, reset and blue/green rebuilds).
package checkpointtest
