package cqrs_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/redispart"
	"github.com/esmill/esmill/sierradb"
)

// rig is a running command router with a bus in front of it.
type rig struct {
	exec    *aggregate.Executor
	client  *sierradb.Client
	bus     *cqrs.CommandBus
	pub     message.Publisher
	router  *message.Router
	topic   func(category string, p int) string
	handled atomic.Int64
}

type transport struct {
	name string
	// make returns a publisher and a subscriber constructor sharing one
	// broker.
	make func(t testing.TB) (message.Publisher, func(group string) message.Subscriber)
}

var transports = []transport{
	{"gochannel", func(t testing.TB) (message.Publisher, func(string) message.Subscriber) {
		// GoChannel hands each message to its subscriber on a goroutine of
		// its own; only a publish that waits for the ack keeps the order.
		gc := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 1024, Persistent: true, BlockPublishUntilSubscriberAck: true}, watermill.NopLogger{})
		t.Cleanup(func() { gc.Close() })
		return gc, func(string) message.Subscriber { return gc }
	}},
	{"redisstream", func(t testing.TB) (message.Publisher, func(string) message.Subscriber) {
		rdb := redis.NewClient(&redis.Options{Addr: testservice.RequireRedis(t)})
		t.Cleanup(func() { rdb.Close() })
		pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		return pub, func(group string) message.Subscriber {
			sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
				Client: rdb, ConsumerGroup: group, BlockTime: 10 * time.Millisecond, OldestId: "0",
			}, watermill.NopLogger{})
			if err != nil {
				t.Fatal(err)
			}
			return sub
		}
	}},
	{"redispart", func(t testing.TB) (message.Publisher, func(string) message.Subscriber) {
		rdb := redis.NewClient(&redis.Options{Addr: testservice.RequireRedis(t), PoolSize: 64})
		t.Cleanup(func() { rdb.Close() })
		pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		return pub, func(group string) message.Subscriber {
			sub, err := redispart.NewSubscriber(redispart.SubscriberConfig{Client: rdb, Group: group, BlockTime: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			return sub
		}
	}},
}

// rigTelemetry instruments a rig (default: the global providers).
type rigTelemetry struct {
	tp trace.TracerProvider
	mp metric.MeterProvider
}

func newRig(t testing.TB, addr string, tr transport, partitions int, tel ...rigTelemetry) *rig {
	t.Helper()
	var tl rigTelemetry
	if len(tel) > 0 {
		tl = tel[0]
	}
	client, err := sierradb.New(sierradb.Config{Addr: addr, PoolSize: 128})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	exec, err := aggregate.NewExecutor(client, aggregate.Config{TracerProvider: tl.tp, MeterProvider: tl.mp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Close() })
	pub, newSub := tr.make(t)
	group := "router-" + watermill.NewShortUUID()
	r := &rig{exec: exec, client: client, pub: pub}
	// Topics of their own, so that tests sharing a Redis do not meet.
	prefix := "t" + watermill.NewShortUUID()
	topic := func(category string, p int) string { return prefix + "." + cqrs.DefaultTopic(category, p) }
	r.topic = topic
	cr, err := cqrs.NewCommandRouter(cqrs.RouterConfig{Executor: exec, Types: []aggregate.AnyType{Accounts}, Partitions: partitions, Topic: topic, ReplyPublisher: pub,
		TracerProvider: tl.tp, MeterProvider: tl.mp})
	if err != nil {
		t.Fatal(err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	router.AddMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if err == nil {
				r.handled.Add(1)
			}
			return out, err
		}
	})
	cr.AddHandlers(router, newSub(group))
	go router.Run(context.Background())
	t.Cleanup(func() { router.Close() })
	<-router.Running()
	bus, err := cqrs.NewCommandBus(cqrs.BusConfig{Publisher: pub, Partitions: partitions, Topic: topic, ReplySubscriber: newSub("replies-" + watermill.NewShortUUID()),
		TracerProvider: tl.tp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	r.bus, r.router = bus, router
	return r
}

func eachSetup(t *testing.T, f func(t *testing.T, addr string, tr transport)) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		for _, tr := range transports {
			t.Run(tr.name, func(t *testing.T) { f(t, addr, tr) })
		}
	})
}

var seq atomic.Int64

func newID(p string) string { return fmt.Sprintf("%s%d-%d", p, time.Now().UnixNano()%1e9, seq.Add(1)) }

func TestExecuteThroughTheBus(t *testing.T) {
	eachSetup(t, func(t *testing.T, addr string, tr transport) {
		r := newRig(t, addr, tr, 4)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		accounts := cqrs.For(r.bus, Accounts)
		id := newID("bus")
		rep, err := accounts.Execute(ctx, id, Deposit{Amount: 40})
		if err != nil {
			t.Fatal(err)
		}
		if rep.StreamID != "account-"+id || rep.Version != 0 || len(rep.Events) != 1 || rep.Events[0].Name != "MoneyDeposited" {
			t.Fatalf("reply %+v", rep)
		}
		_, err = accounts.Execute(ctx, id, Withdraw{Amount: 100})
		var re *cqrs.RemoteError
		if !errors.As(err, &re) || re.Code != "insufficient_funds" || !errors.Is(err, aggregate.ErrRejected) {
			t.Fatalf("overdraft: %v", err)
		}
		// The same message twice: the second delivery is idempotent.
		msgID := watermill.NewUUID()
		if rep, err := accounts.Execute(ctx, id, Withdraw{Amount: 10}, cqrs.WithMessageUUID(msgID)); err != nil || rep.Idempotent {
			t.Fatalf("first delivery: %+v %v", rep, err)
		}
		if rep, err := accounts.Execute(ctx, id, Withdraw{Amount: 10}, cqrs.WithMessageUUID(msgID)); err != nil || !rep.Idempotent {
			t.Fatalf("redelivery: %+v %v", rep, err)
		}
		st, v, err := aggregate.Bind(r.exec, Accounts).Load(ctx, id)
		if err != nil || v != 1 || st.Balance != 30 {
			t.Fatalf("state %+v v%d %v", st, v, err)
		}
	})
}

func TestBadCommands(t *testing.T) {
	eachSetup(t, func(t *testing.T, addr string, tr transport) {
		r := newRig(t, addr, tr, 2)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// A command the type does not know: answered with an error and
		// acked, so the next commands go on.
		_, err := r.bus.Execute(ctx, Accounts, "x", unknownCmd{})
		if !errors.Is(err, cqrs.ErrBadCommand) {
			t.Fatalf("unknown command: %v", err)
		}
		// Garbage payload.
		msg, _ := cqrs.NewCommandMessage(Accounts, "y", Deposit{Amount: 1})
		msg.Payload = []byte{0xff, 0xfe}
		msg.Metadata.Set(esmill.MetaReplyTopic, r.bus.ReplyTopic())
		if err := r.pub.Publish(r.topic("account", cqrs.PartitionOf("account-y", 2)), msg); err != nil {
			t.Fatal(err)
		}
		if _, err := cqrs.For(r.bus, Accounts).Execute(ctx, "y", Deposit{Amount: 2}); err != nil {
			t.Fatalf("a command after a bad one: %v", err)
		}
	})
}

type unknownCmd struct{}

func (unknownCmd) CommandName() string { return "Unknown" }

// Commands sent to many entities concurrently run in parallel across
// partitions and in order per entity.
func TestOrderPerEntityThroughTheRouter(t *testing.T) {
	eachSetup(t, func(t *testing.T, addr string, tr transport) {
		r := newRig(t, addr, tr, 8)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		accounts := cqrs.For(r.bus, Accounts)
		const entities, perEntity = 10, 15
		ids := make([]string, entities)
		var wg sync.WaitGroup
		for e := range entities {
			ids[e] = newID("ord")
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perEntity {
					if err := accounts.Send(ctx, ids[e], Deposit{Amount: int64(i + 1)}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		deadline := time.Now().Add(30 * time.Second)
		for r.handled.Load() < entities*perEntity && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := r.handled.Load(); n != entities*perEntity {
			t.Fatalf("handled %d of %d commands", n, entities*perEntity)
		}
		bound := aggregate.Bind(r.exec, Accounts)
		for _, id := range ids {
			st, v, err := bound.Load(ctx, id)
			if err != nil || v != perEntity-1 {
				t.Fatalf("%s at %d: %v", id, v, err)
			}
			for i, a := range st.Log {
				if a != int64(i+1) {
					t.Fatalf("%s applied %v: out of order", id, st.Log)
				}
			}
		}
	})
}
