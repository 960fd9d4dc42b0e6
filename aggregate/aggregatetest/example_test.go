package aggregatetest_test

import (
	"fmt"

	"github.com/esmill/esmill/aggregate/aggregatetest"
)

// printT is an aggregatetest.T that prints a failure instead of failing a
// test: an example has no *testing.T. In a test, pass t.
type printT struct{ failed bool }

func (p *printT) Helper() {}
func (p *printT) Fatalf(format string, args ...any) {
	p.failed = true
	fmt.Printf("FAIL: "+format+"\n", args...)
	panic(p) // stop the scenario, as t.Fatalf stops a test
}

// run runs a scenario with a printT and reports whether it passed.
func run(scenario func(t aggregatetest.T)) bool {
	t := &printT{}
	func() {
		defer func() {
			if v := recover(); v != nil && v != t {
				panic(v)
			}
		}()
		scenario(t)
	}()
	return !t.failed
}

// Given past events, when a command runs, then these events (or this
// error, or nothing: an idempotent outcome). No store is involved.
func Example() {
	ok := run(func(t aggregatetest.T) {
		aggregatetest.For(t, Accounts).
			Given(Deposited{Amount: 100}).
			When(Withdraw{Amount: 30}).
			Then(Withdrawn{Amount: 30}).
			When(Withdraw{Amount: 71}).
			ThenError(ErrInsufficient)
	})
	fmt.Println("withdrawals:", ok)

	ok = run(func(t aggregatetest.T) {
		aggregatetest.For(t, Accounts).
			Given(ClosedEv{}).
			When(Close{}).
			ThenIdempotent()
	})
	fmt.Println("closing twice:", ok)

	// A scenario that expects the wrong events fails, naming both.
	ok = run(func(t aggregatetest.T) {
		aggregatetest.For(t, Accounts).When(Deposit{Amount: 1}).Then(Deposited{Amount: 2})
	})
	fmt.Println("wrong expectation:", ok)
	// Output:
	// withdrawals: true
	// closing twice: true
	// FAIL: Deposit produced
	// 	Deposited{Amount:1}
	// want
	// 	Deposited{Amount:2}
	// wrong expectation: false
}
