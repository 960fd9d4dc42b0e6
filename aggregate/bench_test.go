package aggregate_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
)

// BenchmarkRehydrate measures loading a 10,000-event entity into a fresh
// executor, from its events alone and from a snapshot (taken every 1,000
// events, so the load reads the snapshot and no further event).
func BenchmarkRehydrate(b *testing.B) {
	const events = 10_000
	for _, tg := range testservice.SierraTargets() {
		b.Run(tg.Name, func(b *testing.B) {
			addr := tg.Addr(b)
			c, err := sierradb.New(sierradb.Config{Addr: addr})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			typ := accountType(aggregate.WithSnapshots[Account](1000, 1))
			id := newID("rehydrate")
			stream := "bank_account-" + id
			// Seed 10,000 events in batches, then one snapshot.
			for v := int64(0); v < events; v += 500 {
				batch := make([]sierradb.NewEvent, 500)
				for i := range batch {
					_, p, _ := typ.EncodeEvent(Deposited{Amount: 1})
					batch[i] = sierradb.NewEvent{StreamID: stream, Name: "MoneyDeposited", ExpectedVersion: sierradb.ExpectAfter(v + int64(i) - 1), Payload: p}
				}
				if _, err := c.AppendMulti(ctx, sierradb.StreamPartitionKey(stream), batch); err != nil {
					b.Fatal(err)
				}
			}
			waitVersionB(b, c, stream, events-1)
			seeder, _ := aggregate.NewExecutor(c, aggregate.Config{})
			// One command past the 10,000 events writes the snapshot.
			if _, err := aggregate.Bind(seeder, typ).Execute(ctx, id, Deposit{Amount: 1}); err != nil {
				b.Fatal(err)
			}
			seeder.Close()
			waitVersionB(b, c, "bank_account:snapshot-"+id, 0)
			for _, mode := range []struct {
				name string
				typ  *aggregate.Type[Account, string]
			}{{"events", accountType()}, {"snapshot", typ}} {
				b.Run(mode.name, func(b *testing.B) {
					for range b.N {
						x, _ := aggregate.NewExecutor(c, aggregate.Config{})
						s, v, err := aggregate.Bind(x, mode.typ).Load(ctx, id)
						x.Close()
						if err != nil || v != events || s.Balance != events+1 {
							b.Fatalf("loaded %d at %d: %v", s.Balance, v, err)
						}
					}
				})
			}
		})
	}
}

func waitVersionB(b *testing.B, c *sierradb.Client, stream string, v int64) {
	b.Helper()
	for range 2000 {
		if got, err := c.StreamVersion(context.Background(), stream); err == nil && got >= v {
			return
		}
	}
	b.Fatalf("%s never reached %d", stream, v)
}

// runCallersB spreads b.N commands over n callers, each on an entity of
// its own, and reports commands per second.
func runCallersB(b *testing.B, entities []string, op func(entity string) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ResetTimer()
	start := time.Now()
	for _, e := range entities {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := op(e); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "cmds/s")
}

// BenchmarkFreshness measures, at 16 callers on distinct entities, what
// the freshness rule costs. A rejection (an answer that writes nothing)
// is given either after reading the stream beyond the cached version
// ("checked", the default) or from the cache under a fence held without a
// break ("fenced", a command router with partition ownership). And a
// command that writes, called with a cancellable context (the executor
// then waits for the store in a goroutine of its own, so that a
// cancellation returns at once) or with a background one.
func BenchmarkFreshness(b *testing.B) {
	for _, tg := range testservice.SierraTargets() {
		b.Run(tg.Name, func(b *testing.B) {
			c, err := sierradb.New(sierradb.Config{Addr: tg.Addr(b), PoolSize: 64})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			x, _ := aggregate.NewExecutor(c, aggregate.Config{})
			defer x.Close()
			accounts := aggregate.Bind(x, accountType())
			ctx := context.Background()
			entities := make([]string, 16)
			for i := range entities {
				entities[i] = newID("fresh")
				if _, err := accounts.Execute(ctx, entities[i], Open{Owner: "o"}); err != nil {
					b.Fatal(err)
				}
			}
			fence := aggregate.Fence{Scope: "bench", Token: 1, Valid: func() bool { return true }}
			reject := func(opts ...aggregate.ExecOption) func(string) error {
				return func(e string) error {
					_, err := accounts.Execute(ctx, e, Withdraw{Amount: 1 << 30}, opts...)
					if !errors.Is(err, ErrInsufficientFunds) {
						return fmt.Errorf("want a rejection, got %v", err)
					}
					return nil
				}
			}
			b.Run("rejection/checked", func(b *testing.B) { runCallersB(b, entities, reject()) })
			b.Run("rejection/fenced", func(b *testing.B) { runCallersB(b, entities, reject(aggregate.UnderFence(fence))) })
			write := func(ctx context.Context) func(string) error {
				return func(e string) error {
					_, err := accounts.Execute(ctx, e, Slow{Amount: 1})
					return err
				}
			}
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			b.Run("write/background", func(b *testing.B) { runCallersB(b, entities, write(ctx)) })
			b.Run("write/cancellable", func(b *testing.B) { runCallersB(b, entities, write(cctx)) })
		})
	}
}
