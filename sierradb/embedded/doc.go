// Package embedded is an in-process SierraDB-compatible server: a real TCP
// listener speaking SierraDB 0.3.1's RESP3 protocol, meant for tests and
// local development, in the spirit of httptest and miniredis.
//
//	srv := embedded.RunT(t)      // in memory, free port, closed by t.Cleanup
//	addr := srv.Addr()           // point a SierraDB client here
//
// # Starting
//
// [Start] takes a [Config]; [Run] uses the defaults; [RunT] starts a server
// for a test (any [Tester], such as *testing.T) and closes it with the test.
// [Server.Close] stops everything the server started and is idempotent.
//
// The default server keeps its events in memory, has 32 partitions and uses
// strict versioning like a real SierraDB 0.3.1: an append must say
// EXPECTED_VERSION empty or a number. Config.RelaxedVersioning accepts any
// and exists too.
//
// With Config.Dir set, each partition has an append-only log in that
// directory. Every transaction (one EAPPEND or EMAPPEND) is one checksummed
// record, fsynced before the reply, so every acknowledged append survives a
// crash. Payloads stay on disk and are read through a block cache of
// Config.CacheBytes; memory holds a compact index. On start every record is
// checked: a torn tail left by a crash is cut away and reported in
// [Server.Recovery], while damage anywhere fails [Start] with a
// [*CorruptLogError] naming the file and offset, unless Config.Salvage keeps
// what precedes it and reports what was dropped.
//
// # Limits
//
// Config caps the connections, the subscriptions of a connection, the
// decoded memory of one request and of all requests in flight, and the time
// a request may take to arrive; going beyond a cap gives the client a clear
// error, and the other clients keep being served.
//
// # Commands
//
// EAPPEND, EMAPPEND, EGET, ESCAN, ESVER, EPSCAN, EPSEQ, ESUB, EPSUB, EACK,
// PING, HELLO and INFO CACHE are implemented with SierraDB's reply shapes,
// key order, frame types and error texts. The README next to this file lists
// every known difference from the real server.
//
// Subscriptions (ESUB, EPSUB) deliver history and then live events with no
// gap and no duplicate, honour WINDOW and EACK, and end when their connection
// closes. Appends are visible to reads and subscriptions as soon as they are
// acknowledged.
//
// # Direct access
//
// Tests can seed and inspect the store without a client: [Server.AppendMulti]
// (the rules of EMAPPEND, with the error types of package sierradb),
// [Server.AppendStream], [Server.Stream], [Server.StreamWithKey],
// [Server.Partition] and [Server.Event].
//
// # Fault injection
//
// [Server.SetError] makes every command fail with a given error until
// cleared; [Server.FailNext] fails the next call of one command;
// [Server.DropConnections] closes every client connection.
// [Server.HoldLive] holds a partition's live events back from the
// subscriptions open at the time, as SierraDB 0.3.1 can, until
// [Server.ReleaseLive].
// [Server.ConnectionCount] and [Server.SubscriptionCount] show what is open.
package embedded
