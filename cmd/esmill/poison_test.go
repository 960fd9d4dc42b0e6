package main_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/esadmin"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/middleware"
)

type ledger struct{ Lines []int64 }

type posted struct {
	Amount int64 `cbor:"amount"`
}

func (posted) EventName() string { return "Posted" }

type post struct{ Amount int64 }

func (post) CommandName() string { return "Post" }

// A command whose handler panics is parked on the poison topic by the
// retry middleware; esmill poison list shows it with the reason; once the
// handler is fixed, esmill poison redrive sends it back, twice (its entry
// is duplicated, as after a redrive that died before deleting it), and it
// is executed once.
func TestPoisonRedrive(t *testing.T) {
	esmill := build(t, esmillPkg)
	e := newEnv(t)
	rds := testservice.RequireRedis(t)
	e.vars = append(e.vars, esadmin.EnvRedis+"="+rds)
	ctx := e.ctx
	var broken atomic.Bool
	broken.Store(true)
	ledgers := aggregate.MustDefine[ledger, string]("ledger",
		aggregate.On(func(l *ledger, e posted) { l.Lines = append(l.Lines, e.Amount) }),
		aggregate.Handle(func(_ ledger, c post, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
			if broken.Load() && c.Amount == 13 {
				panic("post: cannot handle 13")
			}
			return aggregate.Events(posted{Amount: c.Amount}), nil
		}),
	)
	exec, err := aggregate.NewExecutor(e.client, aggregate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Close()
	logger := watermill.NewSlogLogger(slog.New(slog.DiscardHandler))
	// watermill-redisstream closes the client it is given: one each.
	pubRedis, subRedis, rdb := redis.NewClient(&redis.Options{Addr: rds}), redis.NewClient(&redis.Options{Addr: rds}), redis.NewClient(&redis.Options{Addr: rds})
	defer rdb.Close()
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: pubRedis}, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: subRedis, ConsumerGroup: "e2e"}, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ns, topic := "e2e"+e.prefix, "poison."+e.prefix
	retry, err := middleware.NewRetry(middleware.RetryConfig{PoisonPublisher: pub, PoisonTopic: topic})
	if err != nil {
		t.Fatal(err)
	}
	commands, err := cqrs.NewCommandRouter(cqrs.RouterConfig{Executor: exec, Types: []aggregate.AnyType{ledgers}, Partitions: 2,
		Namespace: ns, ReplyPublisher: pub, FailBadCommands: true})
	if err != nil {
		t.Fatal(err)
	}
	defer commands.Close()
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	router.AddMiddleware(retry)
	commands.AddHandlers(router, sub)
	runDone := make(chan error, 1)
	go func() { runDone <- router.Run(context.Background()) }()
	defer func() { router.Close(); <-runDone }()
	<-router.Running()
	bus, err := cqrs.NewCommandBus(cqrs.BusConfig{Publisher: pub, Partitions: 2, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	id := e.id("l1")
	stream := "ledger-" + id
	if err := cqrs.For(bus, ledgers).Send(ctx, id, post{Amount: 13}); err != nil {
		t.Fatal(err)
	}
	var parked []esadmin.PoisonMessage
	eventually(t, "the command is parked on the poison topic", func() bool {
		parked, err = esadmin.ListPoison(ctx, rdb, topic, 0)
		return err == nil && len(parked) == 1
	})
	list := decode[[]esadmin.PoisonMessage](t, e.ok(esmill, "poison", "list", "--topic", topic, "--json"))
	if len(list) != 1 || list[0].Command != "Post" || list[0].EntityID != id || list[0].Class != "poison" ||
		!strings.Contains(list[0].Reason, "cannot handle 13") || !strings.HasPrefix(list[0].Topic, ns+".") {
		t.Fatalf("poison list = %+v", list)
	}
	if out := e.ok(esmill, "poison", "list", "--topic", topic); !strings.Contains(out, list[0].ID) || !strings.Contains(out, "cannot handle 13") {
		t.Fatalf("poison list (table):\n%s", out)
	}
	// The same message twice on the topic.
	xs, err := rdb.XRange(ctx, topic, "-", "+").Result()
	if err != nil || len(xs) != 1 {
		t.Fatalf("poison stream: %v, %v", xs, err)
	}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: topic, Values: xs[0].Values}).Err(); err != nil {
		t.Fatal(err)
	}

	broken.Store(false)
	res := e.run(esmill, "poison", "redrive", "--topic", topic)
	if res.code != 2 || !strings.Contains(res.stderr, "--all") {
		t.Fatalf("redrive without ids: exit %d, stderr %q; want a usage error", res.code, res.stderr)
	}
	out := strings.Split(strings.TrimSpace(e.ok(esmill, "poison", "redrive", "--topic", topic, "--all", "--json")), "\n")
	if len(out) != 2 {
		t.Fatalf("redrive printed %q", out)
	}
	for _, l := range out {
		if m := decode[esadmin.PoisonMessage](t, l); m.UUID != list[0].UUID || m.Topic != list[0].Topic {
			t.Fatalf("re-drove %+v, want %s to %s", m, list[0].UUID, list[0].Topic)
		}
	}
	if left, err := esadmin.ListPoison(ctx, rdb, topic, 0); err != nil || len(left) != 0 {
		t.Fatalf("after the redrive the poison topic holds %+v, %v", left, err)
	}
	// A later command of the entity comes after both copies (one topic
	// per partition, in order).
	if err := cqrs.For(bus, ledgers).Send(ctx, id, post{Amount: 1}); err != nil {
		t.Fatal(err)
	}
	var amounts []int64
	eventually(t, "the later command is executed", func() bool {
		amounts = nil
		for ev, err := range e.client.ScanAll(ctx, stream, 0) {
			if err != nil {
				return false
			}
			d, _, err := ledgers.DecodeEvent(ev)
			if err != nil {
				t.Fatalf("%s v%d: %v", stream, ev.StreamVersion, err)
			}
			amounts = append(amounts, d.(posted).Amount)
		}
		return len(amounts) > 0 && amounts[len(amounts)-1] == 1
	})
	if len(amounts) != 2 || amounts[0] != 13 {
		t.Fatalf("stream %s holds the posts %v, want [13 1]: the re-driven command once, then the later one", stream, amounts)
	}
}
