// Package testservice starts the real services that esmill's tests run
// against — the SierraDB binary, and later PostgreSQL and Redis — as child
// processes on free loopback ports with temporary directories.
//
// A test asks for a service with a Require function. When the service cannot
// be had (binary not installed), the test is skipped with the reason, except
// under CI=true, where a missing service fails the test: a skipped tier is
// not a passed tier. Services started by a test binary are shared by its
// tests and stopped by [Main], which every package that uses them calls from
// TestMain.
package testservice
