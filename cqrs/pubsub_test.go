package cqrs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/pubsub"
)

// A command message sent through the SierraDB Publisher and consumed
// through the SierraDB Subscriber keeps its meaning: its expected version
// is a check on the entity, not an append expectation on the command
// topic's stream; its partition key is the entity's, not the position of
// the stored command; its correlation id reaches the entity's events.
func TestCommandThroughSierraDBPubSub(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		client, err := sierradb.New(sierradb.Config{Addr: addr})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })
		exec, err := aggregate.NewExecutor(client, aggregate.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { exec.Close() })
		pub, err := pubsub.NewPublisher(pubsub.PublisherConfig{Client: client})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pub.Close() })
		newSub := func() message.Subscriber {
			sub, err := pubsub.NewSubscriber(pubsub.SubscriberConfig{Client: client, Start: sierradb.StartLatest})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sub.Close() })
			return sub
		}
		prefix := "t" + watermill.NewShortUUID()
		topic := func(category string, p int) string { return prefix + ".cmd." + category + "." + string(rune('0'+p)) }
		cr, err := cqrs.NewCommandRouter(cqrs.RouterConfig{Executor: exec, Types: []aggregate.AnyType{Accounts}, Partitions: 2, Topic: topic, ReplyPublisher: pub})
		if err != nil {
			t.Fatal(err)
		}
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		cr.AddHandlers(router, newSub())
		go router.Run(context.Background())
		t.Cleanup(func() { router.Close() })
		<-router.Running()
		bus, err := cqrs.NewCommandBus(cqrs.BusConfig{Publisher: pub, Partitions: 2, Topic: topic, ReplySubscriber: newSub(), ReplyTopic: prefix + ".replies"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bus.Close() })

		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		id := newID("ps")
		accounts := cqrs.For(bus, Accounts)
		key := Accounts.PartitionKey(id)
		if rep, err := accounts.Execute(ctx, id, Deposit{Amount: 10}, cqrs.OnPartitionKey(key), cqrs.WithCorrelationID("corr-ps")); err != nil || rep.Version != 0 {
			t.Fatalf("first deposit: %+v %v", rep, err)
		}
		// The entity is at 0: the command runs. Were the expectation
		// taken for the command topic's stream (which holds one command
		// already), the publish would fail.
		rep, err := accounts.Execute(ctx, id, Deposit{Amount: 5}, cqrs.WithExpectedVersion(sierradb.ExpectVersion(0)), cqrs.OnPartitionKey(key))
		if err != nil || rep.Version != 1 {
			t.Fatalf("expecting version 0: %+v %v", rep, err)
		}
		// The entity is not at 7: the entity says so, as a final answer.
		rep, err = accounts.Execute(ctx, id, Deposit{Amount: 5}, cqrs.WithExpectedVersion(sierradb.ExpectVersion(7)))
		var re *cqrs.RemoteError
		if !errors.As(err, &re) || re.Kind != cqrs.KindExpectedVersion || rep.Version != 1 || esmill.Classify(err) != esmill.Final {
			t.Fatalf("expecting version 7: %+v %v", rep, err)
		}
		// The commands are stored on their topic's stream with their keys.
		stream := topic("account", cqrs.PartitionOf("account-"+id, 2))
		var stored int
		for ev, err := range client.ScanAll(ctx, stream, 0) {
			if err != nil {
				t.Fatal(err)
			}
			md, err := codec.DecodeMetadata(ev.Metadata)
			if err != nil {
				t.Fatal(err)
			}
			var data map[string]string
			if err := md.DecodeData(&data); err != nil {
				t.Fatal(err)
			}
			if data[esmill.MetaCategory] == "account" && data[esmill.MetaEntityID] == id {
				stored++
			}
		}
		if stored != 3 {
			t.Fatalf("%d of 3 commands stored on %s with their keys", stored, stream)
		}
		var correlated bool
		for ev, err := range client.ScanAll(ctx, "account-"+id, 0) {
			if err != nil {
				t.Fatal(err)
			}
			md, err := codec.DecodeMetadata(ev.Metadata)
			if err != nil {
				t.Fatal(err)
			}
			if ev.StreamVersion == 0 {
				correlated = md.CorrelationID == "corr-ps"
			}
		}
		if !correlated {
			t.Fatal("the correlation id did not reach the entity's event")
		}
	})
}
