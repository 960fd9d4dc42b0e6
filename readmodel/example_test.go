package readmodel_test

import (
	"context"
	"fmt"
	"log"
	"maps"
	"time"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/lease"
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

// Two instances of one projection share the partitions under leases (in
// one process here, with a memory lease store; across processes, give the
// store's Leases or a lease.RedisStore). Each owns some partitions, and
// between them every event is applied once.
func Example_sharedPartitions() {
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
	ctx := context.Background()
	var last []readmodel.Position
	for i := range 20 {
		name, payload, err := Wallets.EncodeEvent(Credited{Amount: 1})
		if err != nil {
			log.Fatal(err)
		}
		res, err := client.Append(ctx, sierradb.NewEvent{StreamID: fmt.Sprintf("wallet-w%d", i), Name: name,
			Payload: payload, ExpectedVersion: sierradb.ExpectEmpty})
		if err != nil {
			log.Fatal(err)
		}
		last = append(last, readmodel.Position{Partition: res.PartitionID, Sequence: res.PartitionSequence})
	}

	type tx = *memory.Tx[Balances]
	store := memory.New(memory.Config[Balances]{New: func() Balances { return Balances{} }, Clone: maps.Clone[Balances]})
	leases := lease.NewMemoryStore()
	var instances []*readmodel.Runner[tx]
	for _, name := range []string{"a", "b"} {
		r, err := readmodel.New(readmodel.Config[tx]{
			Name: "balances", Client: client, Store: store,
			Leases: leases, Instance: name, LeaseTTL: time.Second,
			Handlers: []readmodel.Handler[tx]{
				readmodel.On(Wallets, func(ctx context.Context, tx tx, id string, e Credited, m readmodel.Meta) error {
					(*tx.Model())["total"] += e.Amount
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
		instances = append(instances, r)
	}
	// Wait until both own partitions and everything is applied.
	for instances[0].Status().Owned == 0 || instances[1].Status().Owned == 0 ||
		instances[0].Status().Owned+instances[1].Status().Owned != int(srv.PartitionCount()) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := instances[0].WaitFor(ctx, last...); err != nil {
		log.Fatal(err)
	}
	store.Read("balances", func(b Balances) { fmt.Println("total", b["total"]) })
	// Output:
	// total 20
}
