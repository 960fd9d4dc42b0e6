// Command sender is the client of the two-process example: it sends bank
// commands over Redis Streams to the workers (../worker) and waits for
// their replies, without any access to SierraDB.
//
//	go run ./examples/twoprocess/sender -redis 127.0.0.1:6379 -accounts 5 -deposits 20
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/examples/bank"
)

func main() {
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address")
	partitions := flag.Int("partitions", 8, "command topics per entity type (the workers must agree)")
	accounts := flag.Int("accounts", 5, "accounts to open")
	deposits := flag.Int("deposits", 20, "deposits of 10 per account, sent concurrently")
	prefix := flag.String("prefix", "acct", "account id prefix")
	flag.Parse()
	if err := run(*redisAddr, *partitions, *accounts, *deposits, *prefix); err != nil {
		log.Fatal(err)
	}
}

func run(redisAddr string, partitions, accounts, deposits int, prefix string) error {
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
	bus, err := cqrs.NewCommandBus(cqrs.BusConfig{Publisher: pub, ReplySubscriber: replies, Partitions: partitions, Logger: logger})
	if err != nil {
		return err
	}
	defer bus.Close()
	accts := cqrs.For(bus, bank.Accounts)

	ids := make([]string, accounts)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%d", prefix, i)
		if _, err := accts.Execute(ctx, ids[i], bank.Open{Owner: fmt.Sprintf("owner %d", i)}); err != nil {
			return fmt.Errorf("open %s: %w", ids[i], err)
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, accounts*deposits)
	for _, id := range ids {
		for range deposits {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := accts.Execute(ctx, id, bank.Deposit{Amount: 10}); err != nil {
					errs <- fmt.Errorf("deposit to %s: %w", id, err)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Printf("%d deposits to %d accounts in %s\n", accounts*deposits, accounts, time.Since(start).Round(time.Millisecond))

	_, err = accts.Execute(ctx, ids[0], bank.Withdraw{Amount: int64(10*deposits + 1)})
	if !errors.Is(err, aggregate.ErrRejected) || !bank.IsCode(err, bank.ErrInsufficientFunds) {
		return fmt.Errorf("an overdraft was not rejected: %v", err)
	}
	fmt.Println("overdraft rejected:", err)
	rep, err := accts.Execute(ctx, ids[0], bank.Withdraw{Amount: 5})
	if err != nil {
		return err
	}
	fmt.Printf("withdrew 5 from %s: version %d\n", ids[0], rep.Version)
	fmt.Fprintln(os.Stdout, "sender done")
	return nil
}
