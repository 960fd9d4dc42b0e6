package aggregate_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
)

// BenchmarkGroupCommit compares, on the real SierraDB, an entity type
// whose entities share one partition key (a tenant) run with
// WithGroupCommit against the same type without it (one append per
// command): 64 callers, each with an entity of its own, 10 commands each
// after a first one (which loads the entity) that is not timed.
// The figure to read is cmds/s.
func BenchmarkGroupCommit(b *testing.B) {
	const entities, commands, callers = 64, 10, 64
	addr := testservice.RequireSierraDB(b)
	for _, v := range []struct {
		name string
		opts []aggregate.Option[counter]
	}{{"one-append-per-command", nil}, {"group-commit", []aggregate.Option[counter]{aggregate.WithGroupCommit[counter]()}}} {
		b.Run(v.name, func(b *testing.B) {
			c, err := sierradb.New(sierradb.Config{Addr: addr, PoolSize: 128})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			var d time.Duration
			for range b.N {
				key := uuid.New()
				opts := append([]aggregate.Option[counter]{
					aggregate.On(func(c *counter, e Bumped) { c.N += e.By }),
					aggregate.Handle(func(c counter, _ Bump, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
						return aggregate.Events(Bumped{By: 1}), nil
					}),
					aggregate.WithPartitionKey[counter, string](func(string) uuid.UUID { return key }),
				}, v.opts...)
				typ := aggregate.MustDefine[counter, string]("tenantcounter", opts...)
				x, err := aggregate.NewExecutor(c, aggregate.Config{})
				if err != nil {
					b.Fatal(err)
				}
				bound := aggregate.Bind(x, typ)
				op := func(ctx context.Context, entity string, _ int) error {
					_, err := bound.Execute(ctx, entity, Bump{})
					return err
				}
				d += hotWorkWarm(b, entities, commands, callers, op)
				x.Close()
			}
			b.ReportMetric(float64(entities*commands*b.N)/d.Seconds(), "cmds/s")
		})
	}
}

// hotWorkWarm is hotWork after one untimed command on every entity (which
// loads it), so that the time is that of commands on cached entities.
func hotWorkWarm(b *testing.B, entities, commands, callers int, op func(ctx context.Context, entity string, i int) error) time.Duration {
	run := uuid.NewString()[:8]
	hotWorkOn(b, run, entities, 1, callers, op)
	return hotWorkOn(b, run, entities, commands, callers, op)
}
