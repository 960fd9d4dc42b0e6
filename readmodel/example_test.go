package readmodel_test

import (
	"context"
	"fmt"
	"log"
	"maps"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/memory"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

type Wallet struct{ Balance int64 }

type Credited struct {
	Amount int64 `cbor:"amount"`
}

func (Credited) EventName() string { return "Credited" }

type Debited struct {
	Amount int64 `cbor:"amount"`
}

func (Debited) EventName() string { return "Debited" }

type Credit struct{ Amount int64 }

func (Credit) CommandName() string { return "Credit" }

type Debit struct{ Amount int64 }

func (Debit) CommandName() string { return "Debit" }

var Wallets = aggregate.MustDefine[Wallet, string]("wallet",
	aggregate.On(func(w *Wallet, e Credited) { w.Balance += e.Amount }),
	aggregate.On(func(w *Wallet, e Debited) { w.Balance -= e.Amount }),
	aggregate.Handle(func(w Wallet, c Credit, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		return aggregate.Events(Credited{Amount: c.Amount}), nil
	}),
	aggregate.Handle(func(w Wallet, c Debit, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		return aggregate.Events(Debited{Amount: c.Amount}), nil
	}),
)

// Balances is the read model: balance per wallet.
type Balances map[string]int64

// A projection of wallet balances into memory.
func Example() {
	srv, err := embedded.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	exec, err := aggregate.NewExecutor(client, aggregate.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer exec.Close()
	ctx := context.Background()
	wallets := aggregate.Bind(exec, Wallets)
	for _, c := range []struct {
		id  string
		cmd aggregate.Command
	}{{"alice", Credit{50}}, {"alice", Debit{20}}, {"bob", Credit{5}}} {
		if _, err := wallets.Execute(ctx, c.id, c.cmd); err != nil {
			log.Fatal(err)
		}
	}

	// The handle type of the memory store is *memory.Tx[Balances].
	type tx = *memory.Tx[Balances]
	store := memory.New(memory.Config[Balances]{New: func() Balances { return Balances{} }, Clone: maps.Clone[Balances]})
	r, err := readmodel.New(readmodel.Config[tx]{
		Name:   "balances",
		Client: client,
		Store:  store,
		Handlers: []readmodel.Handler[tx]{
			readmodel.On(Wallets, func(ctx context.Context, tx tx, id string, e Credited, m readmodel.Meta) error {
				(*tx.Model())[id] += e.Amount
				return nil
			}),
			readmodel.On(Wallets, func(ctx context.Context, tx tx, id string, e Debited, m readmodel.Meta) error {
				(*tx.Model())[id] -= e.Amount
				return nil
			}),
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Start(); err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	if err := r.Sync(ctx); err != nil {
		log.Fatal(err)
	}
	store.Read("balances", func(b Balances) { fmt.Println("alice", b["alice"], "bob", b["bob"]) })
	st := r.Status()
	fmt.Println(st.State, "lag", st.Lag)
	// Output:
	// alice 30 bob 5
	// live lag 0
}
