// Package crashreact is the reactor of the multi-process crash tests: for
// every order event it credits the order's target account and logs the
// order in a log entity (two commands per event), and counts the event in
// its own store (one row per handled event, written through the batch's
// transaction). Losing an event, or running a command twice, shows in the
// targets' streams and in the counts.
package crashreact

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/lease"
	"github.com/esmill/esmill/reactor"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/file"
	"github.com/esmill/esmill/readmodel/postgres"
	"github.com/esmill/esmill/readmodel/sqlite"
	"github.com/esmill/esmill/sierradb"
)

// Ordered is the source event: credit Amount to Target, and log it in Log.
type Ordered struct {
	Target string `cbor:"target"`
	Log    string `cbor:"log"`
	Amount int64  `cbor:"amount"`
}

func (Ordered) EventName() string { return "Ordered" }

// Orders is the source entity type.
var Orders = aggregate.MustDefine[struct{}, string]("xorder", aggregate.On(func(*struct{}, Ordered) {}))

// Credited and Logged are the targets' events; Credit and Log their
// commands.
type (
	Credited struct {
		Amount int64 `cbor:"amount"`
	}
	Logged struct {
		Order string `cbor:"order"`
	}
	Credit struct{ Amount int64 }
	Log    struct{ Order string }
)

func (Credited) EventName() string { return "Credited" }
func (Logged) EventName() string   { return "Logged" }
func (Credit) CommandName() string { return "Credit" }
func (Log) CommandName() string    { return "Log" }

// Targets is the target entity type, of the credited accounts and of the
// logs.
var Targets = aggregate.MustDefine[struct{}, string]("xtarget",
	aggregate.On(func(*struct{}, Credited) {}),
	aggregate.On(func(*struct{}, Logged) {}),
	aggregate.Handle(func(_ struct{}, c Credit, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		return aggregate.Events(Credited(c)), nil
	}),
	aggregate.Handle(func(_ struct{}, c Log, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		return aggregate.Events(Logged{Order: c.Order}), nil
	}),
)

// Seen is the file store's model: handled events by event id.
type Seen map[string]int64

// Options says where the reactor runs.
type Options struct {
	Kind       string // file, sqlite or postgres
	Target     string // directory, database file or DSN
	SierraAddr string
	Name       string
	Instance   string
	// LeaseTTL, when not zero, shares the partitions among the instances
	// under leases in the store (Config.Leases) with this TTL.
	LeaseTTL time.Duration
}

const seenTable = `CREATE TABLE IF NOT EXISTS react_seen (event_id text PRIMARY KEY, n bigint NOT NULL)`

// handle is the reactor's work for one event, whatever the store: two
// commands, then count the event through the transaction.
func handle[T any](count func(ctx context.Context, tx T, eventID string) error) reactor.Handler[T] {
	return reactor.On(Orders, func(ctx context.Context, a *reactor.Act[T], id string, e Ordered) error {
		if _, err := reactor.Execute(ctx, a, Targets, e.Target, Credit{Amount: e.Amount}); err != nil {
			return err
		}
		if _, err := reactor.Execute(ctx, a, Targets, e.Log, Log{Order: id}); err != nil {
			return err
		}
		return count(ctx, a.Tx(), a.Meta().EventID.String())
	})
}

// Run runs the reactor until ctx is done or, with untilSynced, until it
// has caught up with SierraDB. An instance that another one stopped
// (readmodel.ErrCheckpointConflict) starts again from the checkpoints;
// report tells each restart and, at the end, the command counts.
func Run(ctx context.Context, o Options, untilSynced bool, report func(string)) error {
	client, err := sierradb.New(sierradb.Config{Addr: o.SierraAddr})
	if err != nil {
		return err
	}
	defer client.Close()
	exec, err := aggregate.NewExecutor(client, aggregate.Config{MaxConflictRetries: 20})
	if err != nil {
		return err
	}
	defer exec.Close()
	switch o.Kind {
	case "file":
		st, err := file.Open(file.Config[Seen]{Dir: o.Target, Format: codec.JSON, New: func() Seen { return Seen{} }})
		if err != nil {
			return err
		}
		defer st.Close()
		return run(ctx, o, client, exec, st, st.Leases(), untilSynced, report, handle(func(_ context.Context, tx *file.Tx[Seen], id string) error {
			(*tx.Model())[id]++
			return nil
		}))
	case "sqlite":
		db, err := sqlite.OpenDB(o.Target)
		if err != nil {
			return err
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, seenTable); err != nil {
			return err
		}
		st, err := sqlite.New(ctx, db, sqlite.Config{})
		if err != nil {
			return err
		}
		return run(ctx, o, client, exec, st, st.Leases(), untilSynced, report, handle(func(ctx context.Context, tx *sql.Tx, id string) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO react_seen (event_id, n) VALUES (?, 1) ON CONFLICT (event_id) DO UPDATE SET n = n + 1`, id)
			return err
		}))
	case "postgres":
		pool, err := pgxpool.New(ctx, o.Target)
		if err != nil {
			return err
		}
		defer pool.Close()
		// Instances starting together would collide creating the table:
		// an advisory lock serialises them.
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(4242)`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, seenTable)
			return err
		}); err != nil {
			return err
		}
		st, err := postgres.New(ctx, pool, postgres.Config{})
		if err != nil {
			return err
		}
		return run(ctx, o, client, exec, st, st.Leases(), untilSynced, report, handle(func(ctx context.Context, tx pgx.Tx, id string) error {
			_, err := tx.Exec(ctx, `INSERT INTO react_seen (event_id, n) VALUES ($1, 1) ON CONFLICT (event_id) DO UPDATE SET n = react_seen.n + 1`, id)
			return err
		}))
	}
	return fmt.Errorf("crashreact: unknown store %q", o.Kind)
}

func run[T any](ctx context.Context, o Options, client *sierradb.Client, exec *aggregate.Executor, st readmodel.Store[T],
	leases lease.Store, untilSynced bool, report func(string), h reactor.Handler[T]) error {
	var total reactor.Stats
	defer func() {
		report(fmt.Sprintf("instance %s: executed %d idempotent %d failed %d", o.Instance, total.Executed, total.Idempotent, total.Failed))
	}()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	for {
		r, err := reactor.New(reactor.Config[T]{
			Name: o.Name, Client: client, Store: st, Executor: exec, Handlers: []reactor.Handler[T]{h},
			BatchTimeout: 5 * time.Millisecond, MaxAttempts: 1000, RetryBackoff: 5 * time.Millisecond,
			MaxRetryBackoff: 100 * time.Millisecond, StoreRetries: -1,
			Leases: shareLeases(leases, o.LeaseTTL), LeaseTTL: o.LeaseTTL,
		})
		if err != nil {
			return err
		}
		if untilSynced {
			if err := r.Start(); err != nil {
				return err
			}
			err = r.Sync(ctx)
			err = errors.Join(err, r.Close())
		} else {
			err = r.Run(ctx)
		}
		s := r.Stats()
		total.Executed += s.Executed
		total.Idempotent += s.Idempotent
		total.Failed += s.Failed
		if !errors.Is(err, readmodel.ErrCheckpointConflict) {
			return err
		}
		// Another instance committed first: start again from the
		// checkpoints, after a moment.
		report(fmt.Sprintf("instance %s: stopped by another instance (%v); starting again", o.Instance, err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Duration(20+rng.IntN(80)) * time.Millisecond):
		}
	}
}

// shareLeases returns leases when the instances share the partitions.
func shareLeases(leases lease.Store, ttl time.Duration) lease.Store {
	if ttl == 0 {
		return nil
	}
	return leases
}

// Counts is what the reactor left: per source event id, the commands it
// caused on the targets, by event name, and its handled count.
type Counts struct {
	Caused map[string]map[string]int
	Seen   map[string]int64
}

// Read reads the targets' streams and the store's counts.
func Read(ctx context.Context, o Options, client *sierradb.Client, targets []string) (Counts, error) {
	c := Counts{Caused: make(map[string]map[string]int), Seen: make(map[string]int64)}
	for _, t := range targets {
		for ev, err := range client.ScanAll(ctx, Targets.StreamID(t), 0) {
			if err != nil {
				return c, err
			}
			m, err := codec.DecodeMetadata(ev.Metadata)
			if err != nil || m.Causation == nil {
				return c, fmt.Errorf("crashreact: %s v%d has no causation (%v)", ev.StreamID, ev.StreamVersion, err)
			}
			id := m.Causation.EventID.String()
			if c.Caused[id] == nil {
				c.Caused[id] = make(map[string]int)
			}
			c.Caused[id][ev.Name]++
		}
	}
	switch o.Kind {
	case "file":
		st, err := file.Open(file.Config[Seen]{Dir: o.Target, Format: codec.JSON, New: func() Seen { return Seen{} }})
		if err != nil {
			return c, err
		}
		defer st.Close()
		return c, st.Read(o.Name, func(m Seen) {
			for k, v := range m {
				c.Seen[k] = v
			}
		})
	case "sqlite":
		db, err := sqlite.OpenDB(o.Target)
		if err != nil {
			return c, err
		}
		defer db.Close()
		rows, err := db.QueryContext(ctx, `SELECT event_id, n FROM react_seen`)
		if err != nil {
			return c, err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var n int64
			if err := rows.Scan(&id, &n); err != nil {
				return c, err
			}
			c.Seen[id] = n
		}
		return c, rows.Err()
	case "postgres":
		conn, err := pgx.Connect(ctx, o.Target)
		if err != nil {
			return c, err
		}
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, `SELECT event_id, n FROM react_seen`)
		if err != nil {
			return c, err
		}
		var id string
		var n int64
		_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error {
			c.Seen[id] = n
			return nil
		})
		return c, err
	}
	return c, fmt.Errorf("crashreact: unknown store %q", o.Kind)
}
