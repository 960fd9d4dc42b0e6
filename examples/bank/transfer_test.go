package bank_test

import (
	"context"
	"testing"
	"time"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/examples/bank"
	"github.com/esmill/esmill/reactor"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/memory"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

type tx = *memory.Tx[struct{}]

// Transfers complete through the reactor, and a transfer to no account is
// refunded; every debit delivered again (the reactor's checkpoints
// forgotten) changes nothing.
func TestTransfersOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := embedded.RunT(t)
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	exec, err := aggregate.NewExecutor(client, aggregate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Close()
	accounts := aggregate.Bind(exec, bank.Accounts)
	must := func(res aggregate.Result, err error) aggregate.Result {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	must(accounts.Execute(ctx, "alice", bank.Open{Owner: "Alice"}))
	must(accounts.Execute(ctx, "bob", bank.Open{Owner: "Bob"}))
	must(accounts.Execute(ctx, "alice", bank.Deposit{Amount: 100}))
	var debits []readmodel.Position
	for _, tr := range []struct {
		to     string
		amount int64
	}{{"bob", 30}, {"nobody", 10}, {"bob", 5}} {
		for _, e := range must(accounts.Execute(ctx, "alice", bank.SendTransfer{To: tr.to, Amount: tr.amount})).Events {
			debits = append(debits, readmodel.Position{Partition: e.PartitionID, Sequence: e.PartitionSequence})
		}
	}
	want := map[string]int64{"alice": 65, "bob": 35}
	store := memory.New(memory.Config[struct{}]{})
	for pass := range 2 {
		if err := store.Reset(ctx, "transfers", nil); err != nil {
			t.Fatal(err)
		}
		r, err := reactor.New(reactor.Config[tx]{Name: "transfers", Client: client, Store: store, Executor: exec,
			Handlers: []reactor.Handler[tx]{bank.Transfers[tx]()}})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		if err := r.WaitFor(ctx, debits...); err != nil {
			t.Fatal(err)
		}
		r.Close()
		for id, balance := range want {
			a, _, err := accounts.Load(ctx, id)
			if err != nil || a.Balance != balance {
				t.Fatalf("pass %d: %s has %d (%v), want %d", pass, id, a.Balance, err, balance)
			}
		}
		st := r.Stats()
		if pass == 0 && (st.Executed != 3 || st.Failed != 1) {
			t.Fatalf("first pass: %+v, want 3 executed (two credits, one refund) and one rejection", st)
		}
		if pass == 1 && (st.Executed != 0 || st.Idempotent != 3) {
			t.Fatalf("second pass: %+v, want 3 idempotent", st)
		}
	}
}
