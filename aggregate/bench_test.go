package aggregate_test

import (
	"context"
	"testing"

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
