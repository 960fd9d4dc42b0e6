// Command worker is the command side and read side of the two-process
// example: it consumes bank commands from Redis Streams, runs them against
// the account entities in SierraDB, replies over Redis Streams, and
// projects balances into PostgreSQL. The sender is in ../sender.
//
//	go run ./examples/twoprocess/worker -sierradb 127.0.0.1:9090 \
//		-redis 127.0.0.1:6379 -postgres postgres://user@127.0.0.1:5432/bank
//
// Run several workers: they form a lease group in Redis ("bank-workers")
// and divide the command partitions among themselves, so that each
// partition's commands run in one worker at a time, in order; a worker
// that stops or dies hands its partitions over. They read the partitions
// with redispart, by position, so that a new owner starts exactly after
// the last command the previous one acked. The projection's checkpoint
// guard lets only one of them advance it at a time. See ../README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/examples/bank"
	"github.com/esmill/esmill/lease"
	"github.com/esmill/esmill/middleware"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/postgres"
	"github.com/esmill/esmill/redispart"
	"github.com/esmill/esmill/sierradb"
)

func main() {
	sierraAddr := flag.String("sierradb", "127.0.0.1:9090", "SierraDB address")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address")
	pgDSN := flag.String("postgres", "postgres://postgres@127.0.0.1:5432/postgres", "PostgreSQL connection string")
	partitions := flag.Int("partitions", 8, "command topics per entity type (the sender must agree)")
	group := flag.String("group", "bank-workers", "lease group of the workers (and their position on each topic)")
	namespace := flag.String("namespace", "", "prefix of the command topics (the sender must agree)")
	ttl := flag.Duration("lease-ttl", 10*time.Second, "lease time: a dead worker's partitions move after about this long")
	metricsAddr := flag.String("metrics", "127.0.0.1:0", "loopback address serving Prometheus metrics at /metrics (empty: off); the address taken is printed")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := config{sierraAddr: *sierraAddr, redisAddr: *redisAddr, pgDSN: *pgDSN, partitions: *partitions, group: *group, namespace: *namespace, ttl: *ttl, metricsAddr: *metricsAddr}
	if err := run(ctx, cfg); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
	fmt.Println("worker stopped")
}

type config struct {
	sierraAddr, redisAddr, pgDSN string
	partitions                   int
	group, namespace             string
	ttl                          time.Duration
	metricsAddr                  string
}

// serveMetrics serves the worker's OpenTelemetry metrics in the
// Prometheus text format at http://<addr>/metrics until ctx ends, and
// returns the meter provider to give esmill's components.
func serveMetrics(ctx context.Context, addr string, logger *slog.Logger) (metric.MeterProvider, func(), error) {
	if addr == "" {
		return nil, func() {}, nil
	}
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server stopped", "error", err)
		}
	}()
	fmt.Printf("metrics on http://%s/metrics\n", ln.Addr())
	stop := func() {
		srv.Shutdown(context.WithoutCancel(ctx))
		<-done
		mp.Shutdown(context.WithoutCancel(ctx))
	}
	return mp, stop, nil
}

func run(ctx context.Context, cfg config) error {
	sierraAddr, redisAddr, pgDSN, partitions := cfg.sierraAddr, cfg.redisAddr, cfg.pgDSN, cfg.partitions
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	mp, stopMetrics, err := serveMetrics(ctx, cfg.metricsAddr, logger)
	if err != nil {
		return err
	}
	defer stopMetrics()

	client, err := sierradb.New(sierradb.Config{Addr: sierraAddr, Logger: logger})
	if err != nil {
		return err
	}
	defer client.Close()
	exec, err := aggregate.NewExecutor(client, aggregate.Config{Logger: logger, MeterProvider: mp})
	if err != nil {
		return err
	}
	defer exec.Close()

	// Each held partition keeps a connection in a blocking read.
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, PoolSize: 2*partitions + 32})
	defer rdb.Close()
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, watermill.NewSlogLogger(logger))
	if err != nil {
		return err
	}
	// The command topics, read by position (not through a consumer
	// group): a partition's new owner resumes right after the last
	// command the previous owner acked, in order.
	sub, err := redispart.NewSubscriber(redispart.SubscriberConfig{Client: rdb, Group: cfg.group, BlockTime: 50 * time.Millisecond, Logger: logger})
	if err != nil {
		return err
	}

	// Commands: Redis Streams → router → executor → SierraDB, with
	// retries and a poison queue, and deduplication shared by workers.
	// The workers of the group divide the partitions among themselves.
	commands, err := cqrs.NewCommandRouter(cqrs.RouterConfig{
		Executor: exec, Types: []aggregate.AnyType{bank.Accounts}, Partitions: partitions, Namespace: cfg.namespace,
		ReplyPublisher: pub, FailBadCommands: true, Logger: logger, MeterProvider: mp,
		Ownership: &cqrs.Ownership{Store: lease.NewRedisStore(rdb, ""), Group: cfg.group, TTL: cfg.ttl},
	})
	if err != nil {
		return err
	}
	// Leave the group, handing the partitions over at once, before the
	// Redis client closes.
	defer commands.Close()
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NewSlogLogger(logger))
	if err != nil {
		return err
	}
	retry, err := middleware.NewRetry(middleware.RetryConfig{PoisonPublisher: pub, PoisonTopic: "bank.poison", Logger: logger,
		MeterProvider: mp, OnPark: commands.AnswerParked})
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
			Name: "balances", Client: client, Store: store, Logger: logger, MeterProvider: mp,
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

	errs := make(chan error, 3)
	go func() { errs <- project(ctx) }()
	go func() { errs <- router.Run(ctx) }()
	select {
	case <-router.Running():
		fmt.Println("worker ready")
	case err := <-errs:
		return err
	}
	go func() { errs <- showPartitions(ctx, commands) }()
	var first error
	for range 3 {
		if err := <-errs; err != nil && first == nil && !errors.Is(err, context.Canceled) {
			first = err
		}
	}
	if err := commands.Err(); err != nil && first == nil {
		first = err
	}
	return first
}

// showPartitions prints the partitions this worker holds whenever they
// change.
func showPartitions(ctx context.Context, commands *cqrs.CommandRouter) error {
	last := "-"
	for {
		var held []int
		for _, l := range commands.Leases() {
			held = append(held, l.Partition)
		}
		if now := fmt.Sprint(held); now != last {
			fmt.Println("worker holds partitions", now)
			last = now
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}
