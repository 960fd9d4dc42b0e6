package middleware_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"golang.org/x/time/rate"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/middleware"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

// A command router with retries and a poison queue, deduplication and a
// per-entity rate limit, on the embedded SierraDB and GoChannel. Between
// processes, use NewRedisDedupStore and NewRedisLimiter, and a transport
// such as Redis Streams.
func Example() {
	srv, _ := embedded.Run()
	defer srv.Close()
	client, _ := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	defer client.Close()
	exec, _ := aggregate.NewExecutor(client, aggregate.Config{})
	defer exec.Close()

	pubsub := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, watermill.NopLogger{})
	defer pubsub.Close()
	router, _ := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	retry, err := middleware.NewRetry(middleware.RetryConfig{PoisonPublisher: pubsub, PoisonTopic: "esmill.poison"})
	if err != nil {
		log.Fatal(err)
	}
	dedup, err := middleware.NewDedup(middleware.DedupConfig{ReplyPublisher: pubsub})
	if err != nil {
		log.Fatal(err)
	}
	limit, err := middleware.NewRateLimit(middleware.RateLimitConfig{Limiter: middleware.NewLocalLimiter(rate.Limit(100), 10), Wait: true})
	if err != nil {
		log.Fatal(err)
	}
	router.AddMiddleware(retry, dedup, limit)
	commands, err := cqrs.NewCommandRouter(cqrs.RouterConfig{
		Executor: exec, Types: []aggregate.AnyType{Accounts}, ReplyPublisher: pubsub, FailBadCommands: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	commands.AddHandlers(router, pubsub)
	go router.Run(context.Background())
	defer router.Close()
	<-router.Running()

	bus, _ := cqrs.NewCommandBus(cqrs.BusConfig{Publisher: pubsub, ReplySubscriber: pubsub})
	defer bus.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accounts := cqrs.For(bus, Accounts)

	rep, err := accounts.Execute(ctx, "alice", Deposit{Amount: 25}, cqrs.WithMessageUUID("m-1"))
	fmt.Println(rep.StreamID, "version", rep.Version, err)
	rep, err = accounts.Execute(ctx, "alice", Deposit{Amount: 25}, cqrs.WithMessageUUID("m-1"))
	fmt.Println("redelivered:", rep.Idempotent, err)
	_, err = accounts.Execute(ctx, "alice", Withdraw{Amount: 1000})
	fmt.Println(err)
	// Output:
	// account-alice version 0 <nil>
	// redelivered: true <nil>
	// cqrs: remote: aggregate: account-alice rejected Withdraw: no funds
}
