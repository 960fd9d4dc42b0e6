package bank_test

import (
	"testing"

	"github.com/esmill/esmill/aggregate/aggregatetest"
	"github.com/esmill/esmill/examples/bank"
)

func TestAccounts(t *testing.T) {
	aggregatetest.For(t, bank.Accounts).
		When(bank.Deposit{Amount: 5}).ThenError(bank.ErrNotOpen).
		When(bank.Open{Owner: "alice"}).Then(bank.Opened{Owner: "alice"}).
		When(bank.Open{Owner: "alice"}).ThenError(bank.ErrAlreadyOpen).
		When(bank.Deposit{Amount: 100}).Then(bank.Deposited{Amount: 100}).
		When(bank.Withdraw{Amount: 101}).ThenError(bank.ErrInsufficientFunds).
		When(bank.Withdraw{Amount: 0}).ThenError(bank.ErrInvalidAmount).
		When(bank.Withdraw{Amount: 100}).Then(bank.Withdrawn{Amount: 100})
}
