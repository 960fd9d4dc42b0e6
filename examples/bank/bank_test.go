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

func TestTransfers(t *testing.T) {
	aggregatetest.For(t, bank.Accounts).
		Given(bank.Opened{Owner: "alice"}, bank.Deposited{Amount: 50}).
		When(bank.SendTransfer{To: "bob", Amount: 51}).ThenError(bank.ErrInsufficientFunds).
		When(bank.SendTransfer{To: "bob", Amount: 0}).ThenError(bank.ErrInvalidAmount).
		When(bank.SendTransfer{To: "bob", Amount: 20}).Then(bank.TransferSent{To: "bob", Amount: 20}).
		When(bank.SendTransfer{To: "bob", Amount: 31}).ThenError(bank.ErrInsufficientFunds).
		When(bank.RefundTransfer{To: "bob", Amount: 20}).Then(bank.TransferRefunded{To: "bob", Amount: 20}).
		When(bank.SendTransfer{To: "bob", Amount: 50}).Then(bank.TransferSent{To: "bob", Amount: 50})
	aggregatetest.For(t, bank.Accounts).
		When(bank.ReceiveTransfer{From: "alice", Amount: 5}).ThenError(bank.ErrNotOpen).
		When(bank.Open{Owner: "bob"}).Then(bank.Opened{Owner: "bob"}).
		When(bank.ReceiveTransfer{From: "alice", Amount: 5}).Then(bank.TransferReceived{From: "alice", Amount: 5})
}
