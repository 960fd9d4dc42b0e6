// Package bank is the domain of esmill's examples: bank accounts that can
// be opened, credited and debited, never below zero. Its events are stored
// in kameo_es's format, so a Rust service with the same enum reads them.
package bank

import (
	"errors"

	"github.com/esmill/esmill/aggregate"
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
)

// IsCode reports whether err (local, or a cqrs.RemoteError from another
// process) carries a business error code.
func IsCode(err error, target *Error) bool {
	var coded interface{ ErrorCode() string }
	return errors.As(err, &coded) && coded.ErrorCode() == target.Code
}

// Accounts is the account entity type.
var Accounts = aggregate.MustDefine[Account, string]("bank_account",
	aggregate.On(func(a *Account, e Opened) { a.Owner, a.Open = e.Owner, true }),
	aggregate.On(func(a *Account, e Deposited) { a.Balance += e.Amount }),
	aggregate.On(func(a *Account, e Withdrawn) { a.Balance -= e.Amount }),
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
)
