package cqrs_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/redispart"
)

// A reply subscription that ends on its own is replaced: redispart ends a
// subscription whose ack is refused (here: its group's position deleted;
// in production: an ack not recorded within AckTimeout during a Redis
// failover). Before, the bus stopped receiving for good and every later
// Execute failed with ErrClosed.
func TestBusResubscribesWhenItsReplySubscriptionEnds(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: testservice.RequireRedis(t), PoolSize: 32})
	t.Cleanup(func() { rdb.Close() })
	_, exec := embeddedExecutor(t)
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	newSub := func(group string) *redispart.Subscriber {
		sub, err := redispart.NewSubscriber(redispart.SubscriberConfig{Client: rdb, Group: group, BlockTime: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sub.Close() })
		return sub
	}
	run := watermill.NewShortUUID()
	const partitions = 2
	cr, err := cqrs.NewCommandRouter(cqrs.RouterConfig{Executor: exec, Types: []aggregate.AnyType{Accounts}, Partitions: partitions,
		Namespace: run, ReplyPublisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	cr.AddHandlers(router, newSub("router"))
	go router.Run(context.Background())
	t.Cleanup(func() { router.Close() })
	<-router.Running()
	replyTopic, replyGroup := run+".replies", "bus"
	bus, err := cqrs.NewCommandBus(cqrs.BusConfig{Publisher: pub, Partitions: partitions, Namespace: run,
		ReplySubscriber: newSub(replyGroup), ReplyTopic: replyTopic})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	accounts := cqrs.For(bus, Accounts)
	execute := func(what string) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		if _, err := accounts.Execute(cctx, "resub-"+run, Deposit{Amount: 1}); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	execute("before")
	// The bus's reply subscription delivers the next reply, finds its
	// ack refused and ends.
	if err := redispart.DeleteGroup(ctx, rdb, replyTopic, replyGroup); err != nil {
		t.Fatal(err)
	}
	execute("the reply whose ack is refused")
	for i := range 3 {
		execute("after the subscription ended, command " + string(rune('1'+i)))
	}
	st, v, err := aggregate.Bind(exec, Accounts).Load(ctx, "resub-"+run)
	if err != nil || v != 4 || st.Balance != 5 {
		t.Fatalf("state %+v at version %d (%v), want balance 5 at version 4", st, v, err)
	}
}
