package cqrs_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

// A command bus and a command router over GoChannel, on the embedded
// SierraDB: execute a command and wait for its reply, see a rejection
// arrive as a final outcome with the business error's code, and an entity
// expectation checked on the entity.
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

	logger := watermill.NewSlogLogger(slog.New(slog.DiscardHandler))
	pubsub := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, logger)
	defer pubsub.Close()
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		log.Fatal(err)
	}
	commands, err := cqrs.NewCommandRouter(cqrs.RouterConfig{Executor: exec, Types: []aggregate.AnyType{Accounts}, ReplyPublisher: pubsub})
	if err != nil {
		log.Fatal(err)
	}
	commands.AddHandlers(router, pubsub)
	go router.Run(context.Background())
	defer router.Close()
	<-router.Running()

	bus, err := cqrs.NewCommandBus(cqrs.BusConfig{Publisher: pubsub, ReplySubscriber: pubsub})
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	accounts := cqrs.For(bus, Accounts)

	rep, err := accounts.Execute(ctx, "alice", Deposit{Amount: 40}, cqrs.WithCorrelationID("order-17"))
	fmt.Println(rep.StreamID, "at version", rep.Version, "events", len(rep.Events), err)

	_, err = accounts.Execute(ctx, "alice", Withdraw{Amount: 100})
	var remote *cqrs.RemoteError
	fmt.Println(errors.As(err, &remote), remote.Code, errors.Is(err, aggregate.ErrRejected), esmill.Classify(err))

	_, err = accounts.Execute(ctx, "alice", Deposit{Amount: 1}, cqrs.WithExpectedVersion(sierradb.ExpectVersion(5)))
	fmt.Println(errors.Is(err, sierradb.ErrWrongExpectedVersion))
	// Output:
	// account-alice at version 0 events 1 <nil>
	// true insufficient_funds true final
	// true
}
