// Package sierradbtest runs the real SierraDB server as a child process for
// tests: the "processes" tier of esmill's three ways to test, between the
// in-process server of package embedded (no services at all) and the
// containers of module sierradb/sierradbcontainer (Docker).
//
//	srv := sierradbtest.RunT(t)  // sierradb on a free loopback port, temporary directory
//	client, _ := sierradb.New(sierradb.Config{Addr: srv.Addr()})
//
// # Finding the binary
//
// [Binary] looks at $SIERRADB_BIN, then for "sierradb" on PATH, then in
// ~/.cargo/bin. Install it with
//
//	cargo install sierradb-server --version 0.3.1 --locked
//
// # Starting
//
// [Start] writes a single-node configuration (no cluster networking,
// replication factor 1), starts the binary on a free loopback port (or
// [Config.Addr]) and waits until the server answers HELLO as SierraDB with
// the peer id that this very process logged, so a test never pairs with
// another server that holds the port (tested: TestStartRejectsAnotherServerOnItsPort). A port taken by someone else between
// choosing and binding it is retried on another port. [Server.Close] stops
// the server (SIGTERM, then SIGKILL after a grace period) and removes its
// temporary directory; it is idempotent. On Linux the server is killed when
// the test binary dies.
//
// [RunT] starts a server for one test and closes it with the test.
// [Shared] starts one server per test binary on first use and honours
// $SIERRADB_ADDR, which points the tests at a server started elsewhere.
//
// # Skip or fail
//
// When the binary is not installed, [RunT] and [Shared.Addr] skip the test
// with the reason, except under CI=true ([InCI]), where a missing service
// fails the test: a skipped tier is not a passed tier. A binary that is
// installed but fails to start always fails the test, with its output.
// [Unavailable] applies the same rule to any other service.
package sierradbtest
