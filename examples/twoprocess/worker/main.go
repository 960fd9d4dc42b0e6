// Command worker is the command side and read side of the two-process
// example: it consumes bank commands from Redis Streams, runs them against
// the account entities in SierraDB, replies over Redis Streams, and
// projects balances into PostgreSQL. The sender is in ../sender.
//
//	go run ./examples/twoprocess/worker -sierradb 127.0.0.1:9090 \
//		-redis 127.0.0.1:6379 -postgres postgres://user@127.0.0.1:5432/bank
//
// Run several workers: they share the consumer group, so each command is
// handled by one of them, and the projection's checkpoint guard lets only
// one of them advance it at a time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/examples/bank"
	"github.com/esmill/esmill/middleware"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/postgres"
	"github.com/esmill/esmill/sierradb"
)

func main() {
	sierraAddr := flag.String("sierradb", "127.0.0.1:9090", "SierraDB address")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address")
	pgDSN := flag.String("postgres", "postgres://postgres@127.0.0.1:5432/postgres", "PostgreSQL connection string")
	partitions := flag.Int("partitions", 8, "command topics per entity type (the sender must agree)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *sierraAddr, *redisAddr, *pgDSN, *partitions); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
	fmt.Println("worker stopped")
}

func run(ctx context.Context, sierraAddr, redisAddr, pgDSN string, partitions int) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	client, err := sierradb.New(sierradb.Config{Addr: sierraAddr, Logger: logger})
	if err != nil {
		return err
	}
	defer client.Close()
	exec, err := aggregate.NewExecutor(client, aggregate.Config{Logger: logger})
	if err != nil {
		return err
	}
	defer exec.Close()

	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, watermill.NewSlogLogger(logger))
	if err != nil {
		return err
	}
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client: rdb, ConsumerGroup: "bank-workers", OldestId: "0", BlockTime: 50 * time.Millisecond,
	}, watermill.NewSlogLogger(logger))
	if err != nil {
		return err
	}

	// Commands: Redis Streams → router → executor → SierraDB, with
	// retries and a poison queue, and deduplication shared by workers.
	commands, err := cqrs.NewCommandRouter(cqrs.RouterConfig{
		Executor: exec, Types: []aggregate.AnyType{bank.Accounts}, Partitions: partitions,
		ReplyPublisher: pub, FailBadCommands: true, Logger: logger,
	})
	if err != nil {
		return err
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NewSlogLogger(logger))
	if err != nil {
		return err
	}
	retry, err := middleware.NewRetry(middleware.RetryConfig{PoisonPublisher: pub, PoisonTopic: "bank.poison", Logger: logger})
	if err != nil {
		return err
	}
	dedup, err := middleware.NewDedup(middleware.DedupConfig{Store: middleware.NewRedisDedupStore(rdb, "bank:dedup:"), ReplyPublisher: pub, Logger: logger})
	if err != nil {
		return err
	}
	router.AddMiddleware(retry, dedup)
	commands.AddHandlers(router, sub)

	// Read side: balances in PostgreSQL.
	pool, err := pgxpool.New(ctx, pgDSN)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS balances (id TEXT PRIMARY KEY, owner TEXT NOT NULL, balance BIGINT NOT NULL)`); err != nil {
		return err
	}
	store, err := postgres.New(ctx, pool, postgres.Config{})
	if err != nil {
		return err
	}
	newProjection := func() (*readmodel.Runner[pgx.Tx], error) {
		return readmodel.New(readmodel.Config[pgx.Tx]{
			Name: "balances", Client: client, Store: store, Logger: logger,
			// The workers share the projection's partitions, under leases
			// kept in the same PostgreSQL.
			Leases: store.Leases(),
			Handlers: []readmodel.Handler[pgx.Tx]{
				readmodel.On(bank.Accounts, func(ctx context.Context, tx pgx.Tx, id string, e bank.Opened, _ readmodel.Meta) error {
					_, err := tx.Exec(ctx, `INSERT INTO balances (id, owner, balance) VALUES ($1, $2, 0)`, id, e.Owner)
					return err
				}),
				readmodel.On(bank.Accounts, func(ctx context.Context, tx pgx.Tx, id string, e bank.Deposited, _ readmodel.Meta) error {
					_, err := tx.Exec(ctx, `UPDATE balances SET balance = balance + $1 WHERE id = $2`, e.Amount, id)
					return err
				}),
				readmodel.On(bank.Accounts, func(ctx context.Context, tx pgx.Tx, id string, e bank.Withdrawn, _ readmodel.Meta) error {
					_, err := tx.Exec(ctx, `UPDATE balances SET balance = balance - $1 WHERE id = $2`, e.Amount, id)
					return err
				}),
			},
		})
	}
	// Every worker runs the projection; they divide its partitions. A
	// projection stopped by an outage (SierraDB or PostgreSQL restarting
	// for longer than its retries) is started again from its
	// checkpoints, rather than taking the worker down.
	project := func(ctx context.Context) error {
		for {
			p, err := newProjection()
			if err != nil {
				return err
			}
			err = p.Run(ctx)
			if ctx.Err() != nil {
				return err
			}
			logger.Warn("projection stopped; starting it again", "error", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(2 * time.Second):
			}
		}
	}

	errs := make(chan error, 2)
	go func() { errs <- project(ctx) }()
	go func() { errs <- router.Run(ctx) }()
	select {
	case <-router.Running():
		fmt.Println("worker ready")
	case err := <-errs:
		return err
	}
	var first error
	for range 2 {
		if err := <-errs; err != nil && first == nil && !errors.Is(err, context.Canceled) {
			first = err
		}
	}
	return first
}
