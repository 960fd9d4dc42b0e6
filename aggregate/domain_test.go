package aggregate_test

import (
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/internal/testservice"
)

func TestMain(m *testing.M) { os.Exit(testservice.Main(m)) }

// The bank account of the tests. Its events have kameo_es's payload layout
// (see codec/testdata/kameo_golden.json).
type Account struct {
	Owner   string
	Balance int64
	Closed  bool
	Log     []int64 // amounts in order, to check ordering
}

type Opened struct {
	Owner string `cbor:"owner"`
}

func (Opened) EventName() string { return "Opened" }

type Deposited struct {
	Amount uint32 `cbor:"amount"`
}

func (Deposited) EventName() string { return "MoneyDeposited" }

type Withdrawn struct {
	Amount uint32 `cbor:"amount"`
}

func (Withdrawn) EventName() string { return "MoneyWithdrawn" }

// ClosedEv is a unit variant, like kameo_es's Closed.
type ClosedEv struct{ codec.Unit }

func (ClosedEv) EventName() string { return "Closed" }

type Open struct{ Owner string }

func (Open) CommandName() string { return "Open" }

type Deposit struct{ Amount uint32 }

func (Deposit) CommandName() string { return "Deposit" }

type Withdraw struct{ Amount uint32 }

func (Withdraw) CommandName() string { return "Withdraw" }

type Close struct{}

func (Close) CommandName() string { return "Close" }

type Boom struct{}

func (Boom) CommandName() string { return "Boom" }

type Slow struct {
	Amount uint32
	Delay  time.Duration
}

func (Slow) CommandName() string { return "Slow" }

var ErrInsufficientFunds = errors.New("insufficient funds")

// inHandler counts handlers running per test, to see parallelism.
var inHandler, maxInHandler atomic.Int64

func accountType(opts ...aggregate.Option[Account]) *aggregate.Type[Account, string] {
	base := []aggregate.Option[Account]{
		aggregate.On(func(a *Account, e Opened) { a.Owner = e.Owner }),
		aggregate.On(func(a *Account, e Deposited) { a.Balance += int64(e.Amount); a.Log = append(a.Log, int64(e.Amount)) }),
		aggregate.On(func(a *Account, e Withdrawn) { a.Balance -= int64(e.Amount); a.Log = append(a.Log, -int64(e.Amount)) }),
		aggregate.On(func(a *Account, e ClosedEv) { a.Closed = true }),
		aggregate.Handle(func(a Account, c Open, ctx *aggregate.CommandContext) ([]aggregate.Event, error) {
			if ctx.Version >= 0 {
				return nil, errors.New("already open")
			}
			return aggregate.Events(Opened{Owner: c.Owner}), nil
		}),
		aggregate.Handle(func(a Account, c Deposit, ctx *aggregate.CommandContext) ([]aggregate.Event, error) {
			return aggregate.Events(Deposited{Amount: c.Amount}), nil
		}, aggregate.Limit[Account, Deposit](1000, time.Hour)),
		aggregate.Handle(func(a Account, c Withdraw, ctx *aggregate.CommandContext) ([]aggregate.Event, error) {
			if int64(c.Amount) > a.Balance {
				return nil, ErrInsufficientFunds
			}
			return aggregate.Events(Withdrawn{Amount: c.Amount}), nil
		}),
		aggregate.Handle(func(a Account, c Close, ctx *aggregate.CommandContext) ([]aggregate.Event, error) {
			return aggregate.Events(ClosedEv{}), nil
		}, aggregate.IdempotentIf(func(a Account, c Close, ctx *aggregate.CommandContext) bool { return a.Closed })),
		aggregate.Handle(func(a Account, c Boom, ctx *aggregate.CommandContext) ([]aggregate.Event, error) {
			var m map[string]int
			m["boom"]++ // panics
			return nil, nil
		}),
		aggregate.Handle(func(a Account, c Slow, ctx *aggregate.CommandContext) ([]aggregate.Event, error) {
			n := inHandler.Add(1)
			for {
				old := maxInHandler.Load()
				if n <= old || maxInHandler.CompareAndSwap(old, n) {
					break
				}
			}
			time.Sleep(c.Delay)
			inHandler.Add(-1)
			return aggregate.Events(Deposited{Amount: c.Amount}), nil
		}),
	}
	return aggregate.MustDefine[Account, string]("bank_account", append(base, opts...)...)
}
