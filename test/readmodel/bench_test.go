package readmodel_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/file"
	"github.com/esmill/esmill/readmodel/memory"
	"github.com/esmill/esmill/readmodel/mongodb"
	"github.com/esmill/esmill/readmodel/postgres"
	"github.com/esmill/esmill/readmodel/sqlite"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/test/internal/crashproj"
	"github.com/esmill/esmill/test/internal/ferret"
)

// BenchmarkCatchUp measures how fast a projection catches up on stored
// events (decode, handler, commit with the checkpoint), per store and batch
// size, next to the raw subscription read rate from the same server. Each
// iteration is one full catch-up by a new projection; the figure to read is
// events/s. Run it with -benchtime 1x:
//
//	go test -run '^$' -bench CatchUp -benchtime 1x ./test/readmodel/
//
// The MongoDB figures come from FerretDB (SQLite backend), on fewer events.
// ESMILL_CATCHUP_EVENTS sets the number of events (default 100,000).
// "postgres-queued" is the PostgreSQL store with the handler's statement
// queued (postgres.Queue) and sent once per batch; "postgres" runs it at
// once (tx.Exec), one round trip per event.
func BenchmarkCatchUp(b *testing.B) {
	events := 100000
	if s := os.Getenv("ESMILL_CATCHUP_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		events = n
	}
	srv := embedded.RunT(b)
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	ref := &crashRef{client: client, versions: make(map[string]int64), ref: make(map[string]crashproj.Acct)}
	for sent := 0; sent < events; sent += 10000 {
		if err := ref.append(context.Background(), min(10000, events-sent)); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("subscription", func(b *testing.B) {
		var total int
		start := time.Now()
		for range b.N {
			sub, err := client.SubscribePartitions(context.Background(), sierradb.PartitionSubscription{Window: 2000})
			if err != nil {
				b.Fatal(err)
			}
			for n := 0; n < events; n++ {
				ev := <-sub.Events()
				sub.Ack(ev)
			}
			sub.Close()
			total += events
		}
		b.ReportMetric(float64(total)/time.Since(start).Seconds(), "events/s")
	})

	type bench struct {
		name   string
		events int
		run    func(b *testing.B, projection string, batch int) time.Duration
	}
	ctx := context.Background()
	benches := []bench{
		{"memory", events, func(b *testing.B, projection string, batch int) time.Duration {
			st := memory.New(memory.Config[crashproj.Model]{New: func() crashproj.Model { return crashproj.Model{} }, Clone: cloneModel})
			return catchUp(b, client, st, batch, readmodel.On(crashproj.Accounts, func(ctx context.Context, tx *memory.Tx[crashproj.Model], id string, e crashproj.Deposited, m readmodel.Meta) error {
				a := (*tx.Model())[id]
				a.Apply(e.Amount, m.StreamVersion)
				(*tx.Model())[id] = a
				return nil
			}))
		}},
		{"file", events, func(b *testing.B, projection string, batch int) time.Duration {
			st, err := file.Open(file.Config[crashproj.Model]{Dir: b.TempDir(), Format: codec.CBOR, New: func() crashproj.Model { return crashproj.Model{} }})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			return catchUp(b, client, st, batch, readmodel.On(crashproj.Accounts, func(ctx context.Context, tx *file.Tx[crashproj.Model], id string, e crashproj.Deposited, m readmodel.Meta) error {
				a := (*tx.Model())[id]
				a.Apply(e.Amount, m.StreamVersion)
				(*tx.Model())[id] = a
				return nil
			}))
		}},
		{"sqlite", events, func(b *testing.B, projection string, batch int) time.Duration {
			db, err := sqlite.OpenDB(filepath.Join(b.TempDir(), "rm.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(accountsSQL); err != nil {
				b.Fatal(err)
			}
			st, err := sqlite.New(ctx, db, sqlite.Config{})
			if err != nil {
				b.Fatal(err)
			}
			return catchUp(b, client, st, batch, readmodel.On(crashproj.Accounts, func(ctx context.Context, tx *sql.Tx, id string, e crashproj.Deposited, m readmodel.Meta) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO accts (projection, id, count, sum) VALUES (?, ?, 1, ?)
					ON CONFLICT (projection, id) DO UPDATE SET count = count + 1, sum = sum + excluded.sum`, m.Projection, id, e.Amount)
				return err
			}))
		}},
		{"postgres", events, func(b *testing.B, projection string, batch int) time.Duration {
			return catchUpPostgres(b, client, batch, false)
		}},
		{"postgres-queued", events, func(b *testing.B, projection string, batch int) time.Duration {
			return catchUpPostgres(b, client, batch, true)
		}},
	}
	for _, bc := range benches {
		for _, batch := range []int{10, 100, 1000} {
			b.Run(fmt.Sprintf("%s/batch=%d", bc.name, batch), func(b *testing.B) {
				var d time.Duration
				for i := range b.N {
					d += bc.run(b, fmt.Sprintf("bench-%d-%d-%d", batch, i, time.Now().UnixNano()), batch)
				}
				b.ReportMetric(float64(bc.events*b.N)/d.Seconds(), "events/s")
			})
		}
	}

	// MongoDB through FerretDB: a separate, smaller history, because
	// FerretDB applies a few hundred writes per second.
	const mongoEvents = 1000
	srvM := embedded.RunT(b)
	clientM, err := sierradb.New(sierradb.Config{Addr: srvM.Addr()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { clientM.Close() })
	refM := &crashRef{client: clientM, versions: make(map[string]int64), ref: make(map[string]crashproj.Acct)}
	if err := refM.append(ctx, mongoEvents); err != nil {
		b.Fatal(err)
	}
	for _, batch := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("mongodb-ferretdb/batch=%d", batch), func(b *testing.B) {
			mc := mongoClient(b, ferret.Require(b))
			var d time.Duration
			for range b.N {
				st, err := mongodb.New(ctx, mc.Database(randomName("bench_")), mongodb.Config{})
				if err != nil {
					b.Fatal(err)
				}
				d += catchUp(b, clientM, st, batch, readmodel.On(crashproj.Accounts, func(ctx context.Context, h *mongodb.Handle, id string, e crashproj.Deposited, m readmodel.Meta) error {
					_, err := h.Collection("accts").Upsert(ctx, bson.D{{Key: "_id", Value: id}},
						bson.D{{Key: "$inc", Value: bson.D{{Key: "count", Value: int64(1)}, {Key: "sum", Value: e.Amount}}}})
					return err
				}))
			}
			b.ReportMetric(float64(mongoEvents*b.N)/d.Seconds(), "events/s")
		})
	}
}

// catchUpPostgres is a catch-up on PostgreSQL whose handler runs its
// statement at once (one round trip per event) or queues it
// (postgres.Queue: sent with the batch's others and its checkpoint).
func catchUpPostgres(b *testing.B, client *sierradb.Client, batch int, queued bool) time.Duration {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testservice.RequirePostgres(b))
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, accountsSQL); err != nil {
		b.Fatal(err)
	}
	st, err := postgres.New(ctx, pool, postgres.Config{TablePrefix: "bench_"})
	if err != nil {
		b.Fatal(err)
	}
	const upsert = `INSERT INTO accts (projection, id, count, sum) VALUES ($1, $2, 1, $3)
		ON CONFLICT (projection, id) DO UPDATE SET count = accts.count + 1, sum = accts.sum + excluded.sum`
	return catchUp(b, client, st, batch, readmodel.On(crashproj.Accounts, func(ctx context.Context, tx pgx.Tx, id string, e crashproj.Deposited, m readmodel.Meta) error {
		if queued {
			return postgres.Queue(ctx, tx, upsert, m.Projection, id, e.Amount)
		}
		_, err := tx.Exec(ctx, upsert, m.Projection, id, e.Amount)
		return err
	}))
}

const accountsSQL = `CREATE TABLE IF NOT EXISTS accts (projection text, id text, count bigint NOT NULL, sum bigint NOT NULL, PRIMARY KEY (projection, id))`

func cloneModel(m crashproj.Model) crashproj.Model {
	c := make(crashproj.Model, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// catchUp runs a new projection until it has caught up and returns how
// long that took.
func catchUp[T any](b *testing.B, client *sierradb.Client, st readmodel.Store[T], batch int, h readmodel.Handler[T]) time.Duration {
	b.Helper()
	r, err := readmodel.New(readmodel.Config[T]{
		Name: randomName("bench"), Client: client, Store: st, Handlers: []readmodel.Handler[T]{h},
		BatchSize: batch, BatchTimeout: 5 * time.Millisecond,
	})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := r.Start(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := r.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	d := time.Since(start)
	if err := r.Close(); err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkSharedCatchUp measures a projection's catch-up on PostgreSQL
// (ESMILL_SHARED_EVENTS events, default 100,000, on the embedded server)
// by one runner alone, as without Config.Leases, and by one and three
// instances sharing the partitions under leases in PostgreSQL; each
// instance has its own SierraDB client and connection pool, as a process
// would. The time includes the instances dividing the partitions (lease
// TTL 1s). The figure to read is events/s:
//
//	go test -run '^$' -bench SharedCatchUp -benchtime 1x ./test/readmodel/
func BenchmarkSharedCatchUp(b *testing.B) {
	events := 100000
	if s := os.Getenv("ESMILL_SHARED_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		events = n
	}
	srv := embedded.RunT(b)
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	ref := &crashRef{client: client, versions: make(map[string]int64), ref: make(map[string]crashproj.Acct)}
	for sent := 0; sent < events; sent += 10000 {
		if err := ref.append(context.Background(), min(10000, events-sent)); err != nil {
			b.Fatal(err)
		}
	}
	dsn := testservice.RequirePostgres(b)
	ctx := context.Background()
	for _, bc := range []struct {
		name      string
		instances int
		leases    bool
	}{{"alone", 1, false}, {"instances=1", 1, true}, {"instances=3", 3, true}} {
		b.Run(bc.name, func(b *testing.B) {
			var d time.Duration
			for range b.N {
				d += sharedCatchUp(b, ctx, srv.Addr(), dsn, bc.instances, bc.leases)
			}
			b.ReportMetric(float64(events*b.N)/d.Seconds(), "events/s")
		})
	}
}

func sharedCatchUp(b *testing.B, ctx context.Context, addr, dsn string, instances int, leases bool) time.Duration {
	b.Helper()
	name := randomName("shared")
	var runners []*readmodel.Runner[pgx.Tx]
	defer func() {
		for _, r := range runners {
			r.Close()
		}
	}()
	for i := range instances {
		client, err := sierradb.New(sierradb.Config{Addr: addr})
		if err != nil {
			b.Fatal(err)
		}
		defer client.Close()
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		defer pool.Close()
		if _, err := pool.Exec(ctx, accountsSQL); err != nil {
			b.Fatal(err)
		}
		st, err := postgres.New(ctx, pool, postgres.Config{TablePrefix: "bench_"})
		if err != nil {
			b.Fatal(err)
		}
		cfg := readmodel.Config[pgx.Tx]{
			Name: name, Client: client, Store: st, BatchSize: 250, BatchTimeout: 5 * time.Millisecond,
			Handlers: []readmodel.Handler[pgx.Tx]{readmodel.On(crashproj.Accounts, func(ctx context.Context, tx pgx.Tx, id string, e crashproj.Deposited, m readmodel.Meta) error {
				_, err := tx.Exec(ctx, `INSERT INTO accts (projection, id, count, sum) VALUES ($1, $2, 1, $3)
					ON CONFLICT (projection, id) DO UPDATE SET count = accts.count + 1, sum = accts.sum + excluded.sum`, m.Projection, id, e.Amount)
				return err
			})},
		}
		if leases {
			cfg.Leases, cfg.Instance, cfg.LeaseTTL = st.Leases(), fmt.Sprintf("i%d", i), time.Second
		}
		r, err := readmodel.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		runners = append(runners, r)
	}
	start := time.Now()
	for _, r := range runners {
		if err := r.Start(); err != nil {
			b.Fatal(err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := runners[0].Sync(wctx); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}
