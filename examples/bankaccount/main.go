// Command bankaccount is esmill's main example. With no flags it needs no
// server at all: it starts the embedded SierraDB in the process.
//
//	go run ./examples/bankaccount                       # embedded SierraDB
//	go run ./examples/bankaccount -sierradb 127.0.0.1:9090  # a real one
//
// It opens accounts and moves money through the command bus (Watermill's
// GoChannel), shows a rejected overdraft and a redelivered command coming
// back idempotent, transfers money between accounts through a reactor (and
// sees a transfer to an account that does not exist refunded), projects
// the balances into SQLite, prints them and exits.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/examples/bank"
	"github.com/esmill/esmill/reactor"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/sqlite"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

func main() {
	addr := flag.String("sierradb", "", "address of a SierraDB server (default: the embedded one)")
	dbPath := flag.String("sqlite", "", "SQLite file for the read model (default: a temporary file)")
	flag.Parse()
	if err := run(os.Stdout, *addr, *dbPath); err != nil {
		log.Fatal(err)
	}
}

func run(w io.Writer, addr, dbPath string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// 1. SierraDB: embedded unless an address is given.
	if addr == "" {
		srv, err := embedded.Run()
		if err != nil {
			return err
		}
		defer srv.Close()
		addr = srv.Addr()
		fmt.Fprintln(w, "embedded SierraDB on", addr)
	} else {
		fmt.Fprintln(w, "SierraDB at", addr)
	}
	client, err := sierradb.New(sierradb.Config{Addr: addr})
	if err != nil {
		return err
	}
	defer client.Close()
	if err := client.Ping(ctx); err != nil {
		return err
	}

	// 2. The command side: an executor behind a command router, fed by a
	//    Watermill router over GoChannel.
	exec, err := aggregate.NewExecutor(client, aggregate.Config{})
	if err != nil {
		return err
	}
	defer exec.Close()
	// Warnings and errors go to stderr; stdout keeps the story.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pubsub := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, watermill.NewSlogLogger(logger))
	defer pubsub.Close()
	commands, err := cqrs.NewCommandRouter(cqrs.RouterConfig{
		Executor: exec, Types: []aggregate.AnyType{bank.Accounts}, ReplyPublisher: pubsub,
	})
	if err != nil {
		return err
	}
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NewSlogLogger(logger))
	if err != nil {
		return err
	}
	commands.AddHandlers(router, pubsub)
	go router.Run(ctx)
	defer router.Close()
	<-router.Running()
	bus, err := cqrs.NewCommandBus(cqrs.BusConfig{Publisher: pubsub, ReplySubscriber: pubsub})
	if err != nil {
		return err
	}
	defer bus.Close()
	accounts := cqrs.For(bus, bank.Accounts)

	// Account ids unique to this run, so that reruns against one real
	// server start fresh.
	run := time.Now().Format("150405")
	alice, bob := "alice-"+run, "bob-"+run

	// 3. Commands.
	var failed error
	must := func(rep cqrs.Reply, err error) cqrs.Reply {
		if err != nil && failed == nil {
			failed = err
		}
		return rep
	}
	must(accounts.Execute(ctx, alice, bank.Open{Owner: "Alice"}))
	must(accounts.Execute(ctx, bob, bank.Open{Owner: "Bob"}))
	must(accounts.Execute(ctx, alice, bank.Deposit{Amount: 100}))
	must(accounts.Execute(ctx, bob, bank.Deposit{Amount: 50}))
	rep := must(accounts.Execute(ctx, alice, bank.Withdraw{Amount: 30}))
	fmt.Fprintf(w, "alice withdrew 30: %s now at version %d\n", rep.StreamID, rep.Version)

	_, err = accounts.Execute(ctx, bob, bank.Withdraw{Amount: 80})
	fmt.Fprintf(w, "bob tries to withdraw 80: rejected=%t insufficient_funds=%t\n",
		errors.Is(err, aggregate.ErrRejected), bank.IsCode(err, bank.ErrInsufficientFunds))

	// The transport delivers the same message twice: the second time the
	// entity recognises its id and writes nothing.
	rep = must(accounts.Execute(ctx, bob, bank.Deposit{Amount: 25}, cqrs.WithMessageUUID("deposit-"+run)))
	fmt.Fprintf(w, "bob deposits 25: idempotent=%t version=%d\n", rep.Idempotent, rep.Version)
	rep = must(accounts.Execute(ctx, bob, bank.Deposit{Amount: 25}, cqrs.WithMessageUUID("deposit-"+run)))
	fmt.Fprintf(w, "the same deposit redelivered: idempotent=%t version=%d\n", rep.Idempotent, rep.Version)
	if failed != nil {
		return failed
	}

	// 4. SQLite keeps the reactor's checkpoints and the read model.
	if dbPath == "" {
		dir, err := os.MkdirTemp("", "bankaccount-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		dbPath = filepath.Join(dir, "balances.db")
	}
	db, err := sqlite.OpenDB(dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS balances (id TEXT PRIMARY KEY, owner TEXT, balance INTEGER NOT NULL)`); err != nil {
		return err
	}
	store, err := sqlite.New(ctx, db, sqlite.Config{})
	if err != nil {
		return err
	}

	// 5. Transfers: the sender's debit is a command; a reactor credits
	//    the recipient, caused by the debit (or refunds the sender when
	//    the recipient has no open account).
	transfers, err := reactor.New(reactor.Config[*sql.Tx]{
		Name: "transfers", Client: client, Store: store, Executor: exec,
		Handlers: []reactor.Handler[*sql.Tx]{bank.Transfers[*sql.Tx]()},
		Logger:   logger,
	})
	if err != nil {
		return err
	}
	if err := transfers.Start(); err != nil {
		return err
	}
	defer transfers.Close()
	transfer := func(from, to string, amount int64) error {
		rep, err := accounts.Execute(ctx, from, bank.SendTransfer{To: to, Amount: amount})
		if err != nil {
			return err
		}
		// Once the reactor has handled the debit, the transfer is done.
		var at []readmodel.Position
		for _, e := range rep.Events {
			at = append(at, readmodel.Position{Partition: e.PartitionID, Sequence: e.PartitionSequence})
		}
		return transfers.WaitFor(ctx, at...)
	}
	if err := transfer(alice, bob, 20); err != nil {
		return err
	}
	_, bobVersion, err := aggregate.Bind(exec, bank.Accounts).Load(ctx, bob)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "alice transfers 20 to bob: bob credited by the transfers reactor, now at version %d\n", bobVersion)
	if err := transfer(alice, "carol-"+run, 10); err != nil {
		return err
	}
	a, _, err := aggregate.Bind(exec, bank.Accounts).Load(ctx, alice)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "alice transfers 10 to carol, who has no account: refunded, alice has %d\n", a.Balance)
	st := transfers.Stats()
	fmt.Fprintf(w, "the reactor ran %d commands, each caused by its debit\n", st.Executed)

	// 6. The read side: a projection of balances into SQLite.
	projection, err := readmodel.New(readmodel.Config[*sql.Tx]{
		Name: "balances", Client: client, Store: store,
		Handlers: []readmodel.Handler[*sql.Tx]{
			readmodel.On(bank.Accounts, func(ctx context.Context, tx *sql.Tx, id string, e bank.Opened, _ readmodel.Meta) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO balances (id, owner, balance) VALUES (?, ?, 0)`, id, e.Owner)
				return err
			}),
			readmodel.On(bank.Accounts, func(ctx context.Context, tx *sql.Tx, id string, e bank.Deposited, _ readmodel.Meta) error {
				_, err := tx.ExecContext(ctx, `UPDATE balances SET balance = balance + ? WHERE id = ?`, e.Amount, id)
				return err
			}),
			readmodel.On(bank.Accounts, func(ctx context.Context, tx *sql.Tx, id string, e bank.Withdrawn, _ readmodel.Meta) error {
				_, err := tx.ExecContext(ctx, `UPDATE balances SET balance = balance - ? WHERE id = ?`, e.Amount, id)
				return err
			}),
			readmodel.On(bank.Accounts, func(ctx context.Context, tx *sql.Tx, id string, e bank.TransferSent, _ readmodel.Meta) error {
				_, err := tx.ExecContext(ctx, `UPDATE balances SET balance = balance - ? WHERE id = ?`, e.Amount, id)
				return err
			}),
			readmodel.On(bank.Accounts, func(ctx context.Context, tx *sql.Tx, id string, e bank.TransferReceived, _ readmodel.Meta) error {
				_, err := tx.ExecContext(ctx, `UPDATE balances SET balance = balance + ? WHERE id = ?`, e.Amount, id)
				return err
			}),
			readmodel.On(bank.Accounts, func(ctx context.Context, tx *sql.Tx, id string, e bank.TransferRefunded, _ readmodel.Meta) error {
				_, err := tx.ExecContext(ctx, `UPDATE balances SET balance = balance + ? WHERE id = ?`, e.Amount, id)
				return err
			}),
		},
	})
	if err != nil {
		return err
	}
	if err := projection.Start(); err != nil {
		return err
	}
	defer projection.Close()
	// Wait until everything stored so far is in the read model.
	if err := projection.Sync(ctx); err != nil {
		return err
	}
	rows, err := db.QueryContext(ctx, `SELECT owner, balance FROM balances WHERE id IN (?, ?) ORDER BY owner`, alice, bob)
	if err != nil {
		return err
	}
	defer rows.Close()
	fmt.Fprintln(w, "balances in SQLite:")
	for rows.Next() {
		var owner string
		var balance int64
		if err := rows.Scan(&owner, &balance); err != nil {
			return err
		}
		fmt.Fprintf(w, "  %-5s %4d\n", owner, balance)
	}
	return rows.Err()
}
