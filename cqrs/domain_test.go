package cqrs_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

func TestMain(m *testing.M) {
	// go-redis logs connection churn on shutdown to stderr, which would
	// split benchmark result lines; nothing in it is a test failure.
	redis.SetLogger(quiet{})
	os.Exit(testservice.Main(m))
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

type Account struct {
	Balance int64
	Log     []int64
}

type Deposited struct {
	Amount int64 `cbor:"amount"`
}

func (Deposited) EventName() string { return "MoneyDeposited" }

type Withdrawn struct {
	Amount int64 `cbor:"amount"`
}

func (Withdrawn) EventName() string { return "MoneyWithdrawn" }

type Deposit struct{ Amount int64 }

func (Deposit) CommandName() string { return "Deposit" }

type Withdraw struct{ Amount int64 }

func (Withdraw) CommandName() string { return "Withdraw" }

// Explode panics in its handler.
type Explode struct{}

func (Explode) CommandName() string { return "Explode" }

// codedError is a business error with a code that crosses processes.
type codedError struct{ code string }

func (e codedError) Error() string     { return e.code }
func (e codedError) ErrorCode() string { return e.code }

var ErrInsufficientFunds = codedError{"insufficient_funds"}

var Accounts = aggregate.MustDefine[Account, string]("account",
	aggregate.On(func(a *Account, e Deposited) { a.Balance += e.Amount; a.Log = append(a.Log, e.Amount) }),
	aggregate.On(func(a *Account, e Withdrawn) { a.Balance -= e.Amount; a.Log = append(a.Log, -e.Amount) }),
	aggregate.Handle(func(a Account, c Deposit, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		return aggregate.Events(Deposited{Amount: c.Amount}), nil
	}),
	aggregate.Handle(func(a Account, c Withdraw, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		if c.Amount > a.Balance {
			return nil, ErrInsufficientFunds
		}
		return aggregate.Events(Withdrawn{Amount: c.Amount}), nil
	}),
	aggregate.Handle(func(a Account, c Explode, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		panic("the handler exploded")
	}),
)

var _ = errors.New

// embeddedExecutor starts an embedded server and returns a client of it
// and an executor on that client, closed when t ends.
func embeddedExecutor(t *testing.T) (*sierradb.Client, *aggregate.Executor) {
	t.Helper()
	client, err := sierradb.New(sierradb.Config{Addr: embedded.RunT(t).Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	exec, err := aggregate.NewExecutor(client, aggregate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Close() })
	return client, exec
}
