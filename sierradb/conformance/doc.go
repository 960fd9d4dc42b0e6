// Package conformance is a test suite that any SierraDB-compatible server
// must pass: the real SierraDB 0.3.1 and esmill's embedded server alike.
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, conformance.Config{Addr: addr, Server: conformance.Embedded})
//	}
//
// It speaks raw RESP3, so it checks what a typed client would hide: the
// order of reply keys, simple versus blob strings, integers, booleans,
// nulls, push frames and the exact error texts. It covers every command and
// option, partition math, expected-version rules, EMAPPEND atomicity,
// stream/partition-key binding, subscription windows, EACK and resume.
//
// Where the real server has a suspected bug, the suite asserts what the real
// server really does. Where the embedded server deliberately differs, the
// case is a known difference: each implementation is held to its own
// documented behaviour and the test log names the difference and why
// ("KNOWN DIFFERENCE: ..."), so a change on either side fails the suite.
//
// The cluster target ([Config.Role]) runs the suite against a node of a
// SierraDB cluster: on the node coordinating every partition every case
// holds as on a server alone; on a plain replica the behaviours that differ
// (forwarded errors, read-after-write lag, subscriptions that trail) are
// named known differences.
//
// Run writes only to streams and partition keys with random names, so it can
// run against a server that holds other data.
package conformance
