// Package aggregatetest tests entity types with given/when/then scenarios,
// without a store:
//
//	aggregatetest.For(t, Accounts).
//		Given(Opened{Owner: "alice"}, Deposited{Amount: 100}).
//		When(Withdraw{Amount: 30}).
//		Then(Withdrawn{Amount: 30})
//
// Unlike kameo_es's helpers, an unexpected idempotent outcome fails the
// test: Then, ThenError and ThenEvents all require the command to run, and
// ThenIdempotent requires it not to.
package aggregatetest
