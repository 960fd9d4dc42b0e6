package aggregate_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
)

// The counter of the hot-entity benchmarks: a state that does not grow
// with its events, so that what an entity costs is the executor's.
type counter struct{ N int64 }

type Bump struct{}

func (Bump) CommandName() string { return "Bump" }

type Bumped struct {
	By int64 `cbor:"by"`
}

func (Bumped) EventName() string { return "Bumped" }

var counters = aggregate.MustDefine[counter, string]("hotcounter",
	aggregate.On(func(c *counter, e Bumped) { c.N += e.By }),
	aggregate.Handle(func(c counter, _ Bump, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		return aggregate.Events(Bumped{By: 1}), nil
	}))

// hotWork runs `commands` commands on each of `entities` entities from
// `callers` goroutines, each caller owning the entities i with
// i%callers == caller and going round them (so that no two callers write
// one entity, and every entity is hot: all its commands but the first find
// it cached). op runs command i (0-based) of an entity.
func hotWork(b *testing.B, entities, commands, callers int, op func(ctx context.Context, entity string, i int) error) time.Duration {
	return hotWorkOn(b, uuid.NewString()[:8], entities, commands, callers, op)
}

// hotWorkOn is hotWork on the entities named after run.
func hotWorkOn(b *testing.B, run string, entities, commands, callers int, op func(ctx context.Context, entity string, i int) error) time.Duration {
	ctx := context.Background()
	var failed atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for c := range callers {
		wg.Go(func() {
			for i := range commands {
				for e := c; e < entities; e += callers {
					if err := op(ctx, fmt.Sprintf("%s-%d", run, e), i); err != nil {
						failed.Store(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkHotEntities compares the executor with raw EMAPPEND of the same
// requests (one event with its metadata envelope, command name and a new
// command id, at the expected version) on 1,000 entities × 40 commands
// from 64 callers, the server (cmd/sierradb-embedded in directory mode)
// in a process of its own. The two sides are interleaved: each entity's
// 40 commands are run in hotRounds rounds, and in every round both sides
// run theirs (on entities of their own), the side that goes first
// alternating, each after a garbage collection outside the timing; so a
// slow spell of the machine falls on both. It reports raw-cmds/s,
// executor-cmds/s and their ratio.
func BenchmarkHotEntities(b *testing.B) {
	const entities, commands, callers = 1000, 40, 64
	addr := testservice.EmbeddedProcess(b)
	b.Run("interleaved", func(b *testing.B) {
		c, _ := sierradb.New(sierradb.Config{Addr: addr, PoolSize: 128})
		defer c.Close()
		raw := func(round int) func(ctx context.Context, entity string, i int) error {
			return func(ctx context.Context, entity string, i int) error {
				stream := "hotcounter-" + entity
				key := sierradb.StreamPartitionKey(stream)
				_, p, _ := counters.EncodeEvent(Bumped{By: 1})
				md, _ := codec.EncodeMetadata(codec.Metadata{Command: "Bump", CommandID: uuid.NewString()})
				_, err := c.AppendMulti(ctx, key, []sierradb.NewEvent{{
					StreamID: stream, Name: "Bumped", ID: sierradb.NewEventID(key), Timestamp: time.Now(),
					ExpectedVersion: sierradb.ExpectAfter(int64(round*commands/hotRounds+i) - 1), Payload: p, Metadata: md,
				}})
				return err
			}
		}
		var took [2]time.Duration // raw, executor
		for range b.N {
			x, _ := aggregate.NewExecutor(c, aggregate.Config{})
			bound := aggregate.Bind(x, counters)
			exec := func(ctx context.Context, entity string, _ int) error {
				_, err := bound.Execute(ctx, entity, Bump{})
				return err
			}
			runs := [2]string{uuid.NewString()[:8], uuid.NewString()[:8]}
			for r := range hotRounds {
				for k := range 2 {
					side := (k + r) % 2 // raw first in even rounds
					op := exec
					if side == 0 {
						op = raw(r)
					}
					b.StopTimer()
					runtime.GC()
					b.StartTimer()
					took[side] += hotWorkOn(b, runs[side], entities, commands/hotRounds, callers, op)
				}
			}
			x.Close()
		}
		n := float64(entities * commands * b.N)
		b.ReportMetric(n/took[0].Seconds(), "raw-cmds/s")
		b.ReportMetric(n/took[1].Seconds(), "executor-cmds/s")
		b.ReportMetric(took[0].Seconds()/took[1].Seconds(), "executor/raw")
	})
}

// hotRounds is how many rounds BenchmarkHotEntities splits each side's
// commands into.
const hotRounds = 8

// BenchmarkEntityMemory measures the heap an executor keeps per cached
// entity: "busy" entities have each run 300 commands (each with its own
// command id, within the command-id retention), "quiet" ones one. The
// server runs in a process of its own, so that its memory is not counted.
// The figure to read is B/entity.
func BenchmarkEntityMemory(b *testing.B) {
	entities := 500
	if os.Getenv("ESMILL_QUICK") != "" {
		entities = 100 // esbench -quick: fewer entities, noisier
	}
	addr := testservice.EmbeddedProcess(b)
	for _, bc := range []struct {
		name     string
		commands int
	}{{"quiet", 1}, {"busy", 300}} {

		b.Run(bc.name, func(b *testing.B) {
			c, _ := sierradb.New(sierradb.Config{Addr: addr, PoolSize: 64})
			defer c.Close()
			var total float64
			for range b.N {
				x, _ := aggregate.NewExecutor(c, aggregate.Config{})
				bound := aggregate.Bind(x, counters)
				// Warm the executor and the client's connections first,
				// with as many callers, on other entities.
				hotWork(b, 64, 1, 16, func(ctx context.Context, entity string, _ int) error {
					_, err := bound.Execute(ctx, entity, Bump{})
					return err
				})
				before := heapInUse()
				hotWork(b, entities, bc.commands, 16, func(ctx context.Context, entity string, _ int) error {
					_, err := bound.Execute(ctx, entity, Bump{})
					return err
				})
				after := heapInUse()
				total += float64(after-before) / float64(entities)
				runtime.KeepAlive(bound)
				x.Close()
			}
			b.ReportMetric(total/float64(b.N), "B/entity")
		})
	}
}

// heapInUse is the live heap after a full collection.
func heapInUse() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
