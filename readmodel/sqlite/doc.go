// Package sqlite is a [readmodel.Store] on SQLite through database/sql and
// modernc.org/sqlite (pure Go, no cgo). Handlers write the read model
// through the batch's *sql.Tx; the same transaction moves the checkpoint,
// with a compare-and-set, and records parked events. The store creates its
// tables (checkpoints, parked events, active pointers) itself; many
// projections share them, keyed by projection name.
//
// Open the database with [OpenDB], which sets what a projection needs:
// WAL journal, a busy timeout, synchronous=FULL and BEGIN IMMEDIATE
// transactions (so that two writers queue instead of failing when they
// upgrade their locks). A *sql.DB opened otherwise works too.
package sqlite
