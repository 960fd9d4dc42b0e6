package reactor_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/reactor"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/memory"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

// A reactor that charges a wallet for every order placed, on the embedded
// SierraDB. The charge carries the order event as its cause: delivered
// again, the order is not charged twice.
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The checkpoints may live in any readmodel store.
	store := memory.New(memory.Config[struct{}]{})
	charges, err := reactor.New(reactor.Config[*memory.Tx[struct{}]]{
		Name: "charges", Client: client, Store: store, Executor: exec,
		Handlers: []reactor.Handler[*memory.Tx[struct{}]]{
			reactor.On(Orders, func(ctx context.Context, a *reactor.Act[*memory.Tx[struct{}]], id string, e Placed) error {
				_, err := reactor.Execute(ctx, a, Wallets, e.Wallet, Charge{Amount: e.Amount})
				return err
			}),
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := charges.Start(); err != nil {
		log.Fatal(err)
	}
	defer charges.Close()

	res, err := aggregate.Bind(exec, Orders).Execute(ctx, "17", Place{Wallet: "alice", Amount: 30})
	if err != nil {
		log.Fatal(err)
	}
	placed := res.Events[0]
	if err := charges.WaitFor(ctx, readmodel.Position{Partition: placed.PartitionID, Sequence: placed.PartitionSequence}); err != nil {
		log.Fatal(err)
	}
	w, version, err := aggregate.Bind(exec, Wallets).Load(ctx, "alice")
	fmt.Println("alice's balance", w.Balance, "at version", version, err)
	fmt.Printf("%+v\n", charges.Stats())
	// Output:
	// alice's balance -30 at version 0 <nil>
	// {Executed:1 Idempotent:0 Sent:0 Failed:0}
}
