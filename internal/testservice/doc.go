// Package testservice gives esmill's own tests the real services they run
// against — the SierraDB binary, Redis and PostgreSQL — started as child
// processes on free loopback ports with temporary directories, or found
// through environment variables.
//
// A test asks for a service with a Require function. When the service's
// program is not installed, the test is skipped with the reason, except
// under CI=true, where a missing service fails the test: a skipped tier is
// not a passed tier. A program that is installed but fails to start always
// fails the test, with its output. Each launcher checks that the server it
// reached is the one it started (SierraDB: HELLO and the peer id it logged;
// Redis: HELLO and INFO's process id; PostgreSQL: its data directory), so a
// port taken by another server never pairs a test with the wrong one (tested: TestStartRejectsAnotherServerOnItsPort, TestRedisIdentityRejectsSierraDB, TestPostgresIdentity).
//
// Services started by a test binary are shared by its tests and stopped by
// [Main], which every package that uses them calls from TestMain.
//
// The SierraDB launcher is the public package sierradb/sierradbtest; the
// process handling is internal/proc, whose Linux-only parts sit behind build
// tags so that every package's tests build on macOS and Windows.
package testservice
