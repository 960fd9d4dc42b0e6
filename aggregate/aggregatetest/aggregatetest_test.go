package aggregatetest_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/aggregate/aggregatetest"
	"github.com/esmill/esmill/codec"
)

type Account struct {
	Balance int64
	Closed  bool
}

type Deposited struct{ Amount int64 }

func (Deposited) EventName() string { return "Deposited" }

type Withdrawn struct{ Amount int64 }

func (Withdrawn) EventName() string { return "Withdrawn" }

type ClosedEv struct{}

func (ClosedEv) EventName() string { return "Closed" }

type Deposit struct{ Amount int64 }

func (Deposit) CommandName() string { return "Deposit" }

type Withdraw struct{ Amount int64 }

func (Withdraw) CommandName() string { return "Withdraw" }

type Close struct{}

func (Close) CommandName() string { return "Close" }

var ErrInsufficient = errors.New("insufficient funds")

var Accounts = aggregate.MustDefine[Account, string]("account",
	aggregate.On(func(a *Account, e Deposited) { a.Balance += e.Amount }),
	aggregate.On(func(a *Account, e Withdrawn) { a.Balance -= e.Amount }),
	aggregate.On(func(a *Account, e ClosedEv) { a.Closed = true }),
	aggregate.Handle(func(a Account, c Deposit, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		return aggregate.Events(Deposited{Amount: c.Amount}), nil
	}),
	aggregate.Handle(func(a Account, c Withdraw, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		if c.Amount > a.Balance {
			return nil, ErrInsufficient
		}
		return aggregate.Events(Withdrawn{Amount: c.Amount}), nil
	}),
	aggregate.Handle(func(a Account, c Close, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		return aggregate.Events(ClosedEv{}), nil
	}, aggregate.IdempotentIf(func(a Account, c Close, _ *aggregate.CommandContext) bool { return a.Closed })),
)

func TestScenarios(t *testing.T) {
	aggregatetest.For(t, Accounts).
		Given(Deposited{Amount: 100}).
		When(Withdraw{Amount: 30}).
		Then(Withdrawn{Amount: 30}).
		When(Withdraw{Amount: 71}).
		ThenError(ErrInsufficient).
		When(Withdraw{Amount: 70}).
		Then(Withdrawn{Amount: 70})

	aggregatetest.For(t, Accounts).
		Given(ClosedEv{}).
		When(Close{}).
		ThenIdempotent()

	cause := codec.Causation{EventID: uuid.New(), StreamID: "transfer-1", StreamVersion: 3}
	aggregatetest.For(t, Accounts).
		GivenCaused("Deposit", cause, Deposited{Amount: 5}).
		When(Deposit{Amount: 5}, aggregate.CausedBy(cause)).
		ThenIdempotent()
}

// recorder is a T that records failures instead of stopping the test.
type recorder struct{ failed []string }

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
	panic(r)
}

func expectFailure(t *testing.T, want string, f func(aggregatetest.T)) {
	t.Helper()
	r := &recorder{}
	func() {
		defer func() {
			if p := recover(); p != nil && p != r {
				panic(p)
			}
		}()
		f(r)
	}()
	if len(r.failed) != 1 || !strings.Contains(r.failed[0], want) {
		t.Fatalf("failures %q, want one containing %q", r.failed, want)
	}
}

// The helpers fail when they should, including on an unexpected
// idempotent outcome (which kameo_es's `then` let pass silently).
func TestScenarioFailures(t *testing.T) {
	expectFailure(t, "idempotent", func(t aggregatetest.T) {
		aggregatetest.For(t, Accounts).Given(ClosedEv{}).When(Close{}).Then(ClosedEv{})
	})
	expectFailure(t, "produced", func(t aggregatetest.T) {
		aggregatetest.For(t, Accounts).When(Deposit{Amount: 1}).Then(Deposited{Amount: 2})
	})
	expectFailure(t, "want error", func(t aggregatetest.T) {
		aggregatetest.For(t, Accounts).When(Deposit{Amount: 1}).ThenError(ErrInsufficient)
	})
	expectFailure(t, "failed with", func(t aggregatetest.T) {
		aggregatetest.For(t, Accounts).When(Withdraw{Amount: 1}).ThenError(errors.New("other"))
	})
	expectFailure(t, "want an idempotent outcome", func(t aggregatetest.T) {
		aggregatetest.For(t, Accounts).When(Close{}).ThenIdempotent()
	})
	expectFailure(t, "failed", func(t aggregatetest.T) {
		aggregatetest.For(t, Accounts).When(Withdraw{Amount: 1}).Then()
	})
}
