// Command sender is the client of the two-process example: it sends bank
// commands over Redis Streams to the workers (../worker) and waits for
// their replies, without any access to SierraDB.
//
//	go run ./examples/twoprocess/sender -redis 127.0.0.1:6379 -accounts 5 -deposits 20
//
// Each account's commands are sent one after the other without waiting;
// the replies show them run in the order sent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/examples/bank"
	"github.com/esmill/esmill/lease"
)

func main() {
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address")
	partitions := flag.Int("partitions", 8, "command topics per entity type (the workers must agree)")
	group := flag.String("group", "bank-workers", "lease group of the workers: the bus checks their partition count")
	namespace := flag.String("namespace", "", "prefix of the command topics (the workers must agree)")
	accounts := flag.Int("accounts", 5, "accounts to open")
	deposits := flag.Int("deposits", 20, "deposits of 10 per account, sent one after the other without waiting")
	prefix := flag.String("prefix", "acct", "account id prefix")
	flag.Parse()
	if err := run(*redisAddr, *partitions, *group, *namespace, *accounts, *deposits, *prefix); err != nil {
		log.Fatal(err)
	}
}

func run(redisAddr string, partitions int, group, namespace string, accounts, deposits int, prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, watermill.NewSlogLogger(logger))
	if err != nil {
		return err
	}
	// Replies come on this sender's own topic.
	replies, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client: rdb, ConsumerGroup: "sender-" + watermill.NewShortUUID(), BlockTime: 20 * time.Millisecond,
	}, watermill.NewSlogLogger(logger))
	if err != nil {
		return err
	}
	// Given the workers' group, the bus checks at its first send that
	// they run with its partition count.
	bus, err := cqrs.NewCommandBus(cqrs.BusConfig{
		Publisher: pub, ReplySubscriber: replies, Partitions: partitions, Namespace: namespace, Logger: logger,
		Group: &cqrs.Ownership{Store: lease.NewRedisStore(rdb, ""), Group: group},
	})
	if err != nil {
		return err
	}
	defer bus.Close()
	accts := cqrs.For(bus, bank.Accounts)

	// Each account gets Open and its deposits sent one after the other,
	// without waiting for any: they run in the order sent only if one
	// worker at a time handles the account's partition, in order (a
	// deposit before the Open would be rejected).
	ids := make([]string, accounts)
	start := time.Now()
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%d", prefix, i)
		if err := accts.Send(ctx, ids[i], bank.Open{Owner: fmt.Sprintf("owner %d", i)}); err != nil {
			return fmt.Errorf("open %s: %w", ids[i], err)
		}
		for range deposits {
			if err := accts.Send(ctx, ids[i], bank.Deposit{Amount: 10}); err != nil {
				return fmt.Errorf("deposit to %s: %w", ids[i], err)
			}
		}
	}
	fmt.Printf("sent %d opens and %d deposits without waiting\n", accounts, accounts*deposits)
	// An overdraft, sent after them, is rejected only if every deposit
	// ran first.
	_, err = accts.Execute(ctx, ids[0], bank.Withdraw{Amount: int64(10*deposits + 1)})
	if !errors.Is(err, aggregate.ErrRejected) || !bank.IsCode(err, bank.ErrInsufficientFunds) {
		return fmt.Errorf("an overdraft was not rejected: %v", err)
	}
	fmt.Println("overdraft rejected:", err)
	// A withdrawal of all but 5 succeeds only if every deposit ran
	// before it: the results come back in the order sent.
	for _, id := range ids {
		rep, err := accts.Execute(ctx, id, bank.Withdraw{Amount: int64(10*deposits - 5)})
		if err != nil {
			return fmt.Errorf("withdraw from %s: %w (a deposit did not run before it)", id, err)
		}
		fmt.Printf("%s: opened, %d deposits applied in order, withdrew %d at version %d\n", id, deposits, 10*deposits-5, rep.Version)
	}
	fmt.Printf("all in order in %s\n", time.Since(start).Round(time.Millisecond))
	fmt.Fprintln(os.Stdout, "sender done")
	return nil
}
