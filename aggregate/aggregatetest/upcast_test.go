package aggregatetest_test

import (
	"testing"

	"github.com/esmill/esmill/aggregate/aggregatetest"
	"github.com/esmill/esmill/internal/ledger"
)

// Given events of old shapes are applied in their current shape, through
// the type's upcasters.
func TestGivenOldShapes(t *testing.T) {
	typ, err := ledger.Type()
	if err != nil {
		t.Fatal(err)
	}
	aggregatetest.For(t, typ).
		Given(ledger.OpenedV1{Owner: "alice"}).
		When(ledger.Open{Holder: "bob"}).ThenError(ledger.ErrAlreadyOpen)
	aggregatetest.For(t, typ).
		Given(ledger.OpenedV2{Owner: "alice", Currency: "USD"}, ledger.Frozen{}).
		When(ledger.Withdraw{Amount: 5, Reason: "fee"}).Then(ledger.Withdrawn{Amount: 5, Reason: "fee"})
}
