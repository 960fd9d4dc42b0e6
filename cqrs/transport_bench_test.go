package cqrs_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	wcqrs "github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/redispart"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

// The topic layout every scenario of BenchmarkTransport shares: the
// command router's 16 partition topics, 256 entities spread over them.
const (
	tbPartitions = 16
	tbEntities   = 256
)

// BenchmarkTransport measures how many command messages per second leave
// 16 pre-filled Redis Streams topics (256 entities, b.N messages in the
// order each entity's commands were sent) on the embedded server:
//
//   - ceiling: Watermill's router over watermill-redisstream (consumer
//     groups), the same messages and topics, each handler returning at
//     once: what the transport carries;
//   - esmill-redisstream, esmill-redispart: the command router over
//     watermill-redisstream, and over redispart (esmill's own subscriber),
//     each command stored before its ack, one message of a topic at a
//     time;
//   - esmill-redispart-window: the same over redispart with MaxInFlight
//     tbWindow and cqrs.OrderKey: a topic's entities side by side, each
//     entity's commands in order;
//   - watermill-cqrs: Watermill's CommandBus and CommandProcessor over
//     watermill-redisstream, one handler per partition topic, each loading
//     the entity's stream and appending the same event (the same EMAPPEND
//     as the executor's) before its ack.
//
// The clock runs from the router's start to the b.N-th handled message.
// Besides the rate, each scenario reports the CPU time per message of its
// process (router, executor and the embedded server, all in process) and
// of Redis, and how busy the handlers were (the share of the time a
// topic's handler was running).
func BenchmarkTransport(b *testing.B) {
	redisAddr := testservice.RequireRedis(b)
	for _, sc := range []struct {
		name string
		run  func(b *testing.B, redisAddr, sierraAddr string) float64
	}{
		{"ceiling", benchCeiling},
		{"esmill-redisstream", func(b *testing.B, r, s string) float64 { return benchEsmill(b, r, s, false, 0) }},
		{"esmill-redispart", func(b *testing.B, r, s string) float64 { return benchEsmill(b, r, s, true, 1) }},
		{"esmill-redispart-window", func(b *testing.B, r, s string) float64 { return benchEsmill(b, r, s, true, tbWindow) }},
		{"watermill-cqrs", benchWatermillCQRS},
	} {
		b.Run("embedded/"+sc.name, func(b *testing.B) {
			sierraAddr := embedded.RunT(b).Addr()
			b.ReportMetric(sc.run(b, redisAddr, sierraAddr), "cmds/s")
		})
	}
}

func tbRedis(b *testing.B, addr string) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 4 * tbPartitions})
	b.Cleanup(func() { rdb.Close() })
	return rdb
}

// tbStreamSub is the watermill-redisstream subscriber every
// redisstream scenario uses (its own client: its Close closes it).
func tbStreamSub(b *testing.B, redisAddr, group string) message.Subscriber {
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client: redis.NewClient(&redis.Options{Addr: redisAddr, PoolSize: 4 * tbPartitions}), ConsumerGroup: group,
		BlockTime: 10 * time.Millisecond, OldestId: "0", DisableIndefiniteInitialBlock: true,
	}, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	return sub
}

func tbIDs() []string {
	run := watermill.NewShortUUID()
	ids := make([]string, tbEntities)
	for i := range ids {
		ids[i] = fmt.Sprintf("t%s-%d", run, i)
	}
	return ids
}

// fill sends b.N commands, message i to entity i mod 256, from one
// goroutine per entity group so that each entity's commands keep their
// order.
func fill(b *testing.B, send func(ctx context.Context, id string) error) {
	ids := tbIDs()
	const senders = 16
	var wg sync.WaitGroup
	var failed atomic.Value
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := s; i < b.N; i += senders {
				if err := send(context.Background(), ids[i%tbEntities]); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
}

// counter counts handled messages and signals the b.N-th.
type counter struct {
	n    atomic.Int64
	busy atomic.Int64 // nanoseconds spent in handlers
	want int64
	done chan struct{}
}

func newCounter(n int) *counter { return &counter{want: int64(n), done: make(chan struct{})} }

func (c *counter) middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		t0 := time.Now()
		out, err := h(msg)
		c.busy.Add(int64(time.Since(t0)))
		if err == nil && c.n.Add(1) == c.want {
			close(c.done)
		}
		return out, err
	}
}

// cpuTime returns the CPU time this process (with the embedded server in
// it) and the Redis server at rdb have used so far.
func cpuTimes(b *testing.B, rdb *redis.Client) (own, server time.Duration) {
	own = cpuTime()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var secs float64
	for _, l := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("redis INFO cpu: %s: %v", l, err)
			}
			secs += f
		}
	}
	return own, time.Duration(secs * float64(time.Second))
}

// drain runs router until every message is handled and returns the rate.
// It also reports the CPU time per message of this process and of Redis
// (less sensitive than the rate to what else the machine runs), and the
// handlers' busy share.
func (c *counter) drain(b *testing.B, router *message.Router, rdb *redis.Client) float64 {
	b.ResetTimer()
	own0, server0 := cpuTimes(b, rdb)
	start := time.Now()
	go router.Run(context.Background())
	b.Cleanup(func() { router.Close() })
	select {
	case <-c.done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("%d of %d messages handled in 5 minutes", c.n.Load(), c.want)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	own, server := cpuTimes(b, rdb)
	b.ReportMetric(float64(own-own0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/cmd")
	b.ReportMetric(float64(server-server0)/float64(time.Microsecond)/float64(b.N), "redis-cpu-µs/cmd")
	// The share of the time a topic's handler was running, averaged over
	// the topics.
	b.ReportMetric(float64(c.busy.Load())/float64(elapsed)/tbPartitions, "handler-busy")
	return float64(b.N) / elapsed.Seconds()
}

func tbRouter(b *testing.B, c *counter) *message.Router {
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	router.AddMiddleware(c.middleware)
	return router
}

func tbTopic(prefix string) func(string, int) string {
	return func(category string, p int) string { return prefix + "." + cqrs.DefaultTopic(category, p) }
}

// esmillFill fills the topics with the bus's command messages.
func esmillFill(b *testing.B, rdb *redis.Client, topic func(string, int) string) {
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	bus, err := cqrs.NewCommandBus(cqrs.BusConfig{Publisher: pub, Partitions: tbPartitions, Topic: topic})
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	fill(b, func(ctx context.Context, id string) error { return bus.Send(ctx, Accounts, id, Deposit{Amount: 1}) })
}

func benchCeiling(b *testing.B, redisAddr, _ string) float64 {
	topic := tbTopic("t" + watermill.NewShortUUID())
	rdb := tbRedis(b, redisAddr)
	esmillFill(b, rdb, topic)
	c := newCounter(b.N)
	router := tbRouter(b, c)
	sub := tbStreamSub(b, redisAddr, "ceiling")
	for p := range tbPartitions {
		t := topic(Accounts.Category(), p)
		router.AddConsumerHandler(t, t, sub, func(*message.Message) error { return nil })
	}
	return c.drain(b, router, rdb)
}

// benchEsmill runs the command router over redispart (part) or over
// watermill-redisstream.
// tbWindow is the esmill-redispart-window scenario's MaxInFlight.
const tbWindow = 16

func benchEsmill(b *testing.B, redisAddr, sierraAddr string, part bool, window int) float64 {
	topic := tbTopic("t" + watermill.NewShortUUID())
	rdb := tbRedis(b, redisAddr)
	esmillFill(b, rdb, topic)
	client, err := sierradb.New(sierradb.Config{Addr: sierraAddr, PoolSize: 128})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	exec, err := aggregate.NewExecutor(client, aggregate.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { exec.Close() })
	cr, err := cqrs.NewCommandRouter(cqrs.RouterConfig{Executor: exec, Types: []aggregate.AnyType{Accounts}, Partitions: tbPartitions, Topic: topic})
	if err != nil {
		b.Fatal(err)
	}
	var sub message.Subscriber
	if part {
		cfg := redispart.SubscriberConfig{Client: rdb, Group: "router", BlockTime: 10 * time.Millisecond, MaxInFlight: window}
		if window > 1 {
			cfg.OrderKey = cqrs.OrderKey
		}
		sub, err = redispart.NewSubscriber(cfg)
		if err != nil {
			b.Fatal(err)
		}
	} else {
		sub = tbStreamSub(b, redisAddr, "router")
	}
	c := newCounter(b.N)
	router := tbRouter(b, c)
	cr.AddHandlers(router, sub)
	return c.drain(b, router, rdb)
}

// WDeposit is the Watermill-CQRS scenario's command.
type WDeposit struct {
	Account string
	Amount  int64
}

func benchWatermillCQRS(b *testing.B, redisAddr, sierraAddr string) float64 {
	prefix := "t" + watermill.NewShortUUID()
	topicOf := func(p int) string { return fmt.Sprintf("%s.wcqrs.%d", prefix, p) }
	rdb := tbRedis(b, redisAddr)
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	marshaler := wcqrs.JSONMarshaler{}
	bus, err := wcqrs.NewCommandBusWithConfig(pub, wcqrs.CommandBusConfig{
		Marshaler: marshaler,
		GeneratePublishTopic: func(p wcqrs.CommandBusGeneratePublishTopicParams) (string, error) {
			return topicOf(cqrs.PartitionOf(Accounts.Category()+"-"+p.Command.(*WDeposit).Account, tbPartitions)), nil
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	fill(b, func(ctx context.Context, id string) error { return bus.Send(ctx, &WDeposit{Account: id, Amount: 1}) })

	client, err := sierradb.New(sierradb.Config{Addr: sierraAddr, PoolSize: 128})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	c := newCounter(b.N)
	router := tbRouter(b, c)
	topicOfHandler := map[string]string{}
	proc, err := wcqrs.NewCommandProcessorWithConfig(router, wcqrs.CommandProcessorConfig{
		Marshaler: marshaler,
		GenerateSubscribeTopic: func(p wcqrs.CommandProcessorGenerateSubscribeTopicParams) (string, error) {
			return topicOfHandler[p.CommandHandler.HandlerName()], nil
		},
		SubscriberConstructor: func(p wcqrs.CommandProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return tbStreamSub(b, redisAddr, "processor"), nil
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	// One handler per partition topic (AddHandler, unlike AddHandlers,
	// takes several handlers of one command).
	for p := range tbPartitions {
		name := fmt.Sprintf("deposit-%d", p)
		topicOfHandler[name] = topicOf(p)
		if _, err := proc.AddHandler(wcqrs.NewCommandHandler(name, func(ctx context.Context, cmd *WDeposit) error {
			return loadAndAppend(ctx, client, cmd)
		})); err != nil {
			b.Fatal(err)
		}
	}
	return c.drain(b, router, rdb)
}

// loadAndAppend is the Watermill-CQRS handler's store work: read the
// account's stream, fold it, and append one MoneyDeposited at the next
// version with the request the executor sends.
func loadAndAppend(ctx context.Context, client *sierradb.Client, cmd *WDeposit) error {
	stream := Accounts.Category() + "-" + cmd.Account
	key := sierradb.StreamPartitionKey(stream)
	version := int64(-1)
	var acc Account
	for ev, err := range client.ScanAll(ctx, stream, 0) {
		if err != nil {
			return err
		}
		e, _, err := Accounts.DecodeEvent(ev)
		if err != nil {
			return err
		}
		if d, ok := e.(Deposited); ok {
			acc.Balance += d.Amount
		}
		version = int64(ev.StreamVersion)
	}
	_, p, err := Accounts.EncodeEvent(Deposited{Amount: cmd.Amount})
	if err != nil {
		return err
	}
	md, err := codec.EncodeMetadata(codec.Metadata{Command: "WDeposit", CommandID: watermill.NewUUID()})
	if err != nil {
		return err
	}
	_, err = client.AppendMulti(ctx, key, []sierradb.NewEvent{{
		StreamID: stream, Name: "MoneyDeposited", ID: sierradb.NewEventID(key), Timestamp: time.Now(),
		ExpectedVersion: sierradb.ExpectAfter(version), Payload: p, Metadata: md,
	}})
	return err
}
