package aggregate_test

import (
	"context"
	"fmt"
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
// after a first one (which loads the entity) that is not timed, and
// "bound", what group commit can reach at most with 64 callers.
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
	// The bound of group commit at this many callers: each caller has one
	// command in flight, so at best every caller's command rides in every
	// joined append, one after the other. "bound" makes those appends
	// itself, serially: commands EMAPPENDs of one event for each of the
	// 64 streams, each with its expected version, and reports them as cmds/s.
	b.Run("bound", func(b *testing.B) {
		c, err := sierradb.New(sierradb.Config{Addr: addr})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		ctx := context.Background()
		payload := make([]byte, 64)
		var d time.Duration
		for range b.N {
			key, run := uuid.New(), uuid.NewString()[:8]
			events := make([]sierradb.NewEvent, entities)
			for i := range events {
				events[i] = sierradb.NewEvent{StreamID: fmt.Sprintf("tenantbound-%s%d", run, i), Name: "Bumped", Payload: payload}
			}
			start := time.Now()
			for r := range commands {
				for i := range events {
					events[i].ExpectedVersion = sierradb.ExpectAfter(int64(r) - 1)
				}
				if _, err := c.AppendMulti(ctx, key, events); err != nil {
					b.Fatal(err)
				}
			}
			d += time.Since(start)
		}
		b.ReportMetric(float64(entities*commands*b.N)/d.Seconds(), "cmds/s")
	})
}

// hotWorkWarm is hotWork after one untimed command on every entity (which
// loads it), so that the time is that of commands on cached entities.
func hotWorkWarm(b *testing.B, entities, commands, callers int, op func(ctx context.Context, entity string, i int) error) time.Duration {
	run := uuid.NewString()[:8]
	hotWorkOn(b, run, entities, 1, callers, op)
	return hotWorkOn(b, run, entities, commands, callers, op)
}
