package scaleout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/lease"
	"github.com/esmill/esmill/middleware"
	"github.com/esmill/esmill/redisbus"
	"github.com/esmill/esmill/redispart"
	"github.com/esmill/esmill/sierradb"
)

// WorkerConfig configures [RunWorker].
type WorkerConfig struct {
	RedisAddr, SierraAddr string
	// RedisCluster, when set, lists the nodes of a Redis Cluster used
	// instead of RedisAddr: the worker talks to it through
	// redisbus.NewClusterClient, and its replies go through a
	// redisbus.DurablePublisher (returned once a replica holds them).
	RedisCluster []string
	// Namespace prefixes the command topics; Group names the lease group
	// and the redispart group; LeasePrefix the lease keys in Redis.
	Namespace, Group, LeasePrefix string
	Partitions                    int
	// Instance names the worker in the group (default: lease's).
	Instance string
	// TTL is the lease time (default 1s; renewal and stop margin are a
	// fifth of it).
	TTL time.Duration
	// Exclusive runs the router without a lease group (one worker).
	Exclusive bool
	// SharedGroup runs the set-up recommended before partition ownership
	// existed, for comparison: no lease group, every worker reading every
	// topic through one watermill-redisstream consumer group.
	SharedGroup bool
	// SpanFile, when set, makes the worker's test main record its spans
	// and write them there as JSON when it stops (see main_test.go).
	SpanFile string
	Logger   *slog.Logger `json:"-"`
	// TracerProvider and MeterProvider instrument the executor, the
	// router and the retry middleware (default: the global ones).
	TracerProvider trace.TracerProvider `json:"-"`
	MeterProvider  metric.MeterProvider `json:"-"`
	// Ready is called once the router runs.
	Ready func() `json:"-"`
}

// Redis returns a client of the Redis at addr, or of the Redis Cluster of
// nodes when nodes is not empty (redisbus.NewClusterClient; PoolSize is
// then per node).
func Redis(addr string, nodes []string, poolSize int) (redis.UniversalClient, error) {
	if len(nodes) == 0 {
		return redis.NewClient(&redis.Options{Addr: addr, PoolSize: poolSize}), nil
	}
	return redisbus.NewClusterClient(&redis.ClusterOptions{
		Addrs: nodes, PoolSize: poolSize,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}), nil
}

// Publisher returns watermill-redisstream's publisher on rdb, wrapped on
// a Redis Cluster in a redisbus.DurablePublisher: a master killed after
// Publish returned cannot take the message with it.
func Publisher(rdb redis.UniversalClient, logger watermill.LoggerAdapter) (message.Publisher, error) {
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, logger)
	if err != nil {
		return nil, err
	}
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		return pub, nil
	}
	return redisbus.NewDurablePublisher(pub, redisbus.DurableConfig{Client: rdb})
}

// RunWorker runs a command router for Counters until ctx ends.
func RunWorker(ctx context.Context, cfg WorkerConfig) error {
	if cfg.TTL == 0 {
		cfg.TTL = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	client, err := sierradb.New(sierradb.Config{Addr: cfg.SierraAddr, PoolSize: 2*cfg.Partitions + 16, Logger: cfg.Logger})
	if err != nil {
		return err
	}
	defer client.Close()
	exec, err := aggregate.NewExecutor(client, aggregate.Config{Logger: cfg.Logger, TracerProvider: cfg.TracerProvider, MeterProvider: cfg.MeterProvider})
	if err != nil {
		return err
	}
	defer exec.Close()
	// Each held partition keeps a connection in a blocking read.
	rdb, err := Redis(cfg.RedisAddr, cfg.RedisCluster, 2*cfg.Partitions+32)
	if err != nil {
		return err
	}
	defer rdb.Close()
	wlog := watermill.NewSlogLogger(cfg.Logger)
	pub, err := Publisher(rdb, wlog)
	if err != nil {
		return err
	}
	var sub message.Subscriber
	if cfg.SharedGroup {
		sub, err = redisstream.NewSubscriber(redisstream.SubscriberConfig{
			Client: rdb, ConsumerGroup: cfg.Group, OldestId: "0", BlockTime: 50 * time.Millisecond,
		}, wlog)
	} else {
		// A partition's entities side by side, each entity's commands in
		// order (the chaos tests count what comes out of order).
		sub, err = redispart.NewSubscriber(redispart.SubscriberConfig{Client: rdb, Group: cfg.Group, BlockTime: 50 * time.Millisecond, Logger: cfg.Logger,
			MaxInFlight: 8, OrderKey: cqrs.OrderKey})
	}
	if err != nil {
		return err
	}
	rc := cqrs.RouterConfig{
		Executor: exec, Types: []aggregate.AnyType{Counters}, Partitions: cfg.Partitions,
		Namespace: cfg.Namespace, ReplyPublisher: pub, Logger: cfg.Logger,
		TracerProvider: cfg.TracerProvider, MeterProvider: cfg.MeterProvider,
	}
	if !cfg.Exclusive && !cfg.SharedGroup {
		rc.Ownership = &cqrs.Ownership{
			Store: lease.NewRedisStore(rdb, cfg.LeasePrefix), Group: cfg.Group, Instance: cfg.Instance, TTL: cfg.TTL,
		}
	}
	commands, err := cqrs.NewCommandRouter(rc)
	if err != nil {
		return err
	}
	// Leave the group (releasing the partitions) before the client closes.
	defer commands.Close()
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, wlog)
	if err != nil {
		return err
	}
	// Transient failures (SierraDB busy, a lease lost mid-command) are
	// retried with backoff; the message's context ends when its
	// partition is revoked, which ends the retries.
	retry, err := middleware.NewRetry(middleware.RetryConfig{MaxRetries: 20, InitialInterval: 20 * time.Millisecond, MaxInterval: time.Second,
		Logger: cfg.Logger, MeterProvider: cfg.MeterProvider, OnPark: commands.AnswerParked})
	if err != nil {
		return err
	}
	router.AddMiddleware(retry)
	commands.AddHandlers(router, sub)
	errs := make(chan error, 1)
	go func() { errs <- router.Run(ctx) }()
	select {
	case <-router.Running():
		if cfg.Ready != nil {
			cfg.Ready()
		}
	case err := <-errs:
		return err
	}
	err = <-errs
	if lerr := commands.Err(); lerr != nil {
		return fmt.Errorf("lease group: %w", lerr)
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
