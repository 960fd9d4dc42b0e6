package cqrs_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/google/uuid"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
)

var concurrency = []int{1, 16, 64}

// runCallers spreads b.N operations over n callers, each on an entity of
// its own, and reports commands per second.
func runCallers(b *testing.B, n int, op func(ctx context.Context, caller int, entity string, i int) error) {
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	run := watermill.NewShortUUID()
	b.ResetTimer()
	start := time.Now()
	for c := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			entity := fmt.Sprintf("b%s-%d", run, c)
			for i := 0; next.Add(1) <= int64(b.N); i++ {
				if err := op(ctx, c, entity, i); err != nil {
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

// BenchmarkCommands compares, on each server and at 1, 16 and 64
// concurrent callers on distinct entities: raw EMAPPEND of one event (the
// baseline), the executor, and the command router over GoChannel and over
// Redis Streams (bus.Execute, waiting for the reply).
func BenchmarkCommands(b *testing.B) {
	for _, tg := range testservice.SierraTargets() {
		b.Run(tg.Name, func(b *testing.B) {
			addr := tg.Addr(b)
			for _, n := range concurrency {
				b.Run(fmt.Sprintf("raw-emappend/callers=%d", n), func(b *testing.B) {
					c, _ := sierradb.New(sierradb.Config{Addr: addr, PoolSize: 128})
					defer c.Close()
					// The same request the executor sends: the payload, an
					// event id, the timestamp and the metadata envelope
					// (command name and id), with the expected version.
					runCallers(b, n, func(ctx context.Context, _ int, entity string, i int) error {
						stream := "account-" + entity
						key := sierradb.StreamPartitionKey(stream)
						_, p, _ := Accounts.EncodeEvent(Deposited{Amount: 1})
						md, _ := codec.EncodeMetadata(codec.Metadata{Command: "Deposit", CommandID: uuid.NewString()})
						_, err := c.AppendMulti(ctx, key, []sierradb.NewEvent{{
							StreamID: stream, Name: "MoneyDeposited", ID: sierradb.NewEventID(key), Timestamp: time.Now(),
							ExpectedVersion: sierradb.ExpectAfter(int64(i) - 1), Payload: p, Metadata: md,
						}})
						return err
					})
				})
				b.Run(fmt.Sprintf("executor/callers=%d", n), func(b *testing.B) {
					c, _ := sierradb.New(sierradb.Config{Addr: addr, PoolSize: 128})
					defer c.Close()
					x, _ := aggregate.NewExecutor(c, aggregate.Config{})
					defer x.Close()
					accounts := aggregate.Bind(x, Accounts)
					runCallers(b, n, func(ctx context.Context, _ int, entity string, _ int) error {
						_, err := accounts.Execute(ctx, entity, Deposit{Amount: 1})
						return err
					})
				})
				for _, tr := range transports {
					b.Run(fmt.Sprintf("router-%s/callers=%d", tr.name, n), func(b *testing.B) {
						r := newRig(b, addr, tr, 16)
						accounts := cqrs.For(r.bus, Accounts)
						runCallers(b, n, func(ctx context.Context, _ int, entity string, _ int) error {
							_, err := accounts.Execute(ctx, entity, Deposit{Amount: 1})
							return err
						})
					})
				}
			}
		})
	}
}
