// Package bank is the domain of esmill's examples: bank accounts that can
// be opened, credited and debited, never below zero (tested: TestAccounts,
// TestTransfers), and that transfer
// money to each other. Its events are stored in kameo_es's format, so a
// Rust service with the same enum reads them.
//
// A transfer spans two accounts, which SierraDB cannot write atomically
// unless they share a partition key: the sender's SendTransfer debits it
// (TransferSent), and a reactor ([Transfers]) reacts by crediting the
// recipient (ReceiveTransfer, caused by the debit, so it runs once however
// often the debit is delivered), or, when the recipient rejects it (no such
// open account), by refunding the sender.
package bank

import (
	"context"
	"errors"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/reactor"
)

// Account is an account's state, rebuilt from its events.
type Account struct {
	Owner   string
	Balance int64
	Open    bool
}

// Events, with explicit stored names.
type (
	Opened struct {
		Owner string `cbor:"owner" json:"owner"`
	}
	Deposited struct {
		Amount int64 `cbor:"amount" json:"amount"`
	}
	Withdrawn struct {
		Amount int64 `cbor:"amount" json:"amount"`
	}
)

func (Opened) EventName() string    { return "Opened" }
func (Deposited) EventName() string { return "MoneyDeposited" }
func (Withdrawn) EventName() string { return "MoneyWithdrawn" }

// Transfer events: the sender's debit, the recipient's credit, and the
// sender's refund when the recipient rejected it.
type (
	TransferSent struct {
		To     string `cbor:"to" json:"to"`
		Amount int64  `cbor:"amount" json:"amount"`
	}
	TransferReceived struct {
		From   string `cbor:"from" json:"from"`
		Amount int64  `cbor:"amount" json:"amount"`
	}
	TransferRefunded struct {
		To     string `cbor:"to" json:"to"`
		Amount int64  `cbor:"amount" json:"amount"`
	}
)

func (TransferSent) EventName() string     { return "TransferSent" }
func (TransferReceived) EventName() string { return "TransferReceived" }
func (TransferRefunded) EventName() string { return "TransferRefunded" }

// Commands, with explicit stored names.
type (
	Open struct {
		Owner string `cbor:"owner" json:"owner"`
	}
	Deposit struct {
		Amount int64 `cbor:"amount" json:"amount"`
	}
	Withdraw struct {
		Amount int64 `cbor:"amount" json:"amount"`
	}
)

func (Open) CommandName() string     { return "Open" }
func (Deposit) CommandName() string  { return "Deposit" }
func (Withdraw) CommandName() string { return "Withdraw" }

// Transfer commands. SendTransfer is the caller's; the Transfers reactor
// sends the other two.
type (
	SendTransfer struct {
		To     string `cbor:"to" json:"to"`
		Amount int64  `cbor:"amount" json:"amount"`
	}
	ReceiveTransfer struct {
		From   string `cbor:"from" json:"from"`
		Amount int64  `cbor:"amount" json:"amount"`
	}
	RefundTransfer struct {
		To     string `cbor:"to" json:"to"`
		Amount int64  `cbor:"amount" json:"amount"`
	}
)

func (SendTransfer) CommandName() string    { return "SendTransfer" }
func (ReceiveTransfer) CommandName() string { return "ReceiveTransfer" }
func (RefundTransfer) CommandName() string  { return "RefundTransfer" }

// Error is a business error with a code that survives the trip back to a
// caller in another process.
type Error struct{ Code string }

func (e *Error) Error() string     { return e.Code }
func (e *Error) ErrorCode() string { return e.Code }

// Business errors.
var (
	ErrInsufficientFunds = &Error{Code: "insufficient_funds"}
	ErrNotOpen           = &Error{Code: "account_not_open"}
	ErrAlreadyOpen       = &Error{Code: "account_already_open"}
	ErrInvalidAmount     = &Error{Code: "invalid_amount"}
	ErrSelfTransfer      = &Error{Code: "self_transfer"}
)

// IsCode reports whether err (local, or a cqrs.RemoteError from another
// process) carries a business error code.
func IsCode(err error, target *Error) bool {
	var coded interface{ ErrorCode() string }
	return errors.As(err, &coded) && coded.ErrorCode() == target.Code
}

// Category is the accounts' category: their streams are
// "bank_account-<id>".
const Category = "bank_account"

// Accounts is the account entity type.
var Accounts = aggregate.MustDefine[Account, string](Category,
	aggregate.On(func(a *Account, e Opened) { a.Owner, a.Open = e.Owner, true }),
	aggregate.On(func(a *Account, e Deposited) { a.Balance += e.Amount }),
	aggregate.On(func(a *Account, e Withdrawn) { a.Balance -= e.Amount }),
	aggregate.On(func(a *Account, e TransferSent) { a.Balance -= e.Amount }),
	aggregate.On(func(a *Account, e TransferReceived) { a.Balance += e.Amount }),
	aggregate.On(func(a *Account, e TransferRefunded) { a.Balance += e.Amount }),
	aggregate.Handle(func(a Account, c Open, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		if a.Open {
			return nil, ErrAlreadyOpen
		}
		return aggregate.Events(Opened{Owner: c.Owner}), nil
	}),
	aggregate.Handle(func(a Account, c Deposit, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		switch {
		case !a.Open:
			return nil, ErrNotOpen
		case c.Amount <= 0:
			return nil, ErrInvalidAmount
		}
		return aggregate.Events(Deposited{Amount: c.Amount}), nil
	}),
	aggregate.Handle(func(a Account, c Withdraw, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		switch {
		case !a.Open:
			return nil, ErrNotOpen
		case c.Amount <= 0:
			return nil, ErrInvalidAmount
		case c.Amount > a.Balance:
			return nil, ErrInsufficientFunds
		}
		return aggregate.Events(Withdrawn{Amount: c.Amount}), nil
	}),
	aggregate.Handle(func(a Account, c SendTransfer, ctx *aggregate.CommandContext) ([]aggregate.Event, error) {
		switch {
		case !a.Open:
			return nil, ErrNotOpen
		case c.Amount <= 0:
			return nil, ErrInvalidAmount
		case c.Amount > a.Balance:
			return nil, ErrInsufficientFunds
		case ctx.StreamID == Category+"-"+c.To:
			return nil, ErrSelfTransfer
		}
		return aggregate.Events(TransferSent(c)), nil
	}),
	aggregate.Handle(func(a Account, c ReceiveTransfer, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		if !a.Open {
			return nil, ErrNotOpen
		}
		return aggregate.Events(TransferReceived(c)), nil
	}),
	aggregate.Handle(func(a Account, c RefundTransfer, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		return aggregate.Events(TransferRefunded(c)), nil
	}),
)

// Transfers is the handler of the reactor that completes transfers (see
// the package documentation), for a reactor whose checkpoints are kept in
// a store with handle T:
//
//	reactor.New(reactor.Config[*sql.Tx]{Name: "transfers", ..., Handlers: []reactor.Handler[*sql.Tx]{bank.Transfers[*sql.Tx]()}})
//
// Both commands carry the debit as their cause: redelivered, or replayed,
// the debit credits (or refunds) once.
func Transfers[T any]() reactor.Handler[T] {
	return reactor.On(Accounts, func(ctx context.Context, a *reactor.Act[T], from string, e TransferSent) error {
		_, err := reactor.Execute(ctx, a, Accounts, e.To, ReceiveTransfer{From: from, Amount: e.Amount})
		if errors.Is(err, aggregate.ErrRejected) {
			_, err = reactor.Execute(ctx, a, Accounts, from, RefundTransfer(e))
		}
		return err
	})
}
