package aggregate_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/esmill/esmill/aggregate"
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

var ErrNoFunds = errors.New("not enough funds")

var Wallets = aggregate.MustDefine[Wallet, string]("wallet",
	aggregate.On(func(w *Wallet, e Credited) { w.Balance += e.Amount }),
	aggregate.On(func(w *Wallet, e Debited) { w.Balance -= e.Amount }),
	aggregate.Handle(func(w Wallet, c Credit, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		return aggregate.Events(Credited{Amount: c.Amount}), nil
	}),
	aggregate.Handle(func(w Wallet, c Debit, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		if c.Amount > w.Balance {
			return nil, ErrNoFunds
		}
		return aggregate.Events(Debited{Amount: c.Amount}), nil
	}),
)

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

	wallets := aggregate.Bind(exec, Wallets)
	ctx := context.Background()
	res, err := wallets.Execute(ctx, "w1", Credit{Amount: 50})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.StreamID, "at version", res.Version)

	_, err = wallets.Execute(ctx, "w1", Debit{Amount: 80})
	fmt.Println(errors.Is(err, ErrNoFunds), errors.Is(err, aggregate.ErrRejected))

	// The same message delivered twice is written once.
	wallets.Execute(ctx, "w1", Debit{Amount: 20}, aggregate.WithCommandID("msg-1"))
	again, _ := wallets.Execute(ctx, "w1", Debit{Amount: 20}, aggregate.WithCommandID("msg-1"))
	fmt.Println("idempotent:", again.Idempotent)

	w, version, _ := wallets.Load(ctx, "w1")
	fmt.Println("balance", w.Balance, "version", version)
	// Output:
	// wallet-w1 at version 0
	// true true
	// idempotent: true
	// balance 30 version 1
}
