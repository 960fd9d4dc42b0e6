// Package crashproj is the projection of the crash tests: per account, the
// number of deposits, their sum, a sum weighted by stream version and the
// last version, kept by each durable store. Losing an event, or applying
// one twice, changes the counts and sums.
package crashproj

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/file"
	"github.com/esmill/esmill/readmodel/mongodb"
	"github.com/esmill/esmill/readmodel/postgres"
	"github.com/esmill/esmill/readmodel/sqlite"
	"github.com/esmill/esmill/sierradb"
)

// Category is the category of the crash tests' streams.
const Category = "crashacct"

// Deposited is the crash tests' event.
type Deposited struct {
	Amount int64 `cbor:"amount"`
}

func (Deposited) EventName() string { return "Deposited" }

// Accounts is the entity type.
var Accounts = aggregate.MustDefine[struct{}, string](Category, aggregate.On(func(*struct{}, Deposited) {}))

// Acct is one account of the read model.
type Acct struct {
	Count    int64 `json:"count" cbor:"count" bson:"count"`
	Sum      int64 `json:"sum" cbor:"sum" bson:"sum"`
	Weighted int64 `json:"weighted" cbor:"weighted" bson:"weighted"`
	Last     int64 `json:"last" cbor:"last" bson:"last"`
}

// Apply adds a deposit of a stream version to a.
func (a *Acct) Apply(amount int64, version uint64) {
	a.Count++
	a.Sum += amount
	a.Weighted += amount * int64(version+1)
	a.Last = max(a.Last, int64(version))
}

// Model is the file store's read model.
type Model map[string]Acct

// Options says where the projection runs.
type Options struct {
	Kind       string // file, sqlite, postgres or mongodb
	Target     string // directory, database file, DSN or MongoDB URI
	Database   string // the MongoDB database
	SierraAddr string
	Name       string
	BatchSize  int
}

const accountsTable = `CREATE TABLE IF NOT EXISTS crash_accts (id text PRIMARY KEY, count bigint NOT NULL,
	sum bigint NOT NULL, weighted bigint NOT NULL, last bigint NOT NULL)`

// Run runs the projection until ctx is done or, with untilSynced, until it
// has caught up with SierraDB.
func Run(ctx context.Context, o Options, untilSynced bool) error {
	client, err := sierradb.New(sierradb.Config{Addr: o.SierraAddr})
	if err != nil {
		return err
	}
	defer client.Close()
	switch o.Kind {
	case "file":
		st, err := file.Open(file.Config[Model]{Dir: o.Target, Format: codec.JSON, New: func() Model { return Model{} }})
		if err != nil {
			return err
		}
		defer st.Close()
		return run(ctx, o, client, st, untilSynced, readmodel.On(Accounts, func(ctx context.Context, tx *file.Tx[Model], id string, e Deposited, m readmodel.Meta) error {
			a := (*tx.Model())[id]
			a.Apply(e.Amount, m.StreamVersion)
			(*tx.Model())[id] = a
			return nil
		}))
	case "sqlite":
		db, err := sqlite.OpenDB(o.Target)
		if err != nil {
			return err
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, accountsTable); err != nil {
			return err
		}
		st, err := sqlite.New(ctx, db, sqlite.Config{})
		if err != nil {
			return err
		}
		return run(ctx, o, client, st, untilSynced, readmodel.On(Accounts, func(ctx context.Context, tx *sql.Tx, id string, e Deposited, m readmodel.Meta) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO crash_accts (id, count, sum, weighted, last) VALUES (?, 1, ?, ?, ?)
				ON CONFLICT (id) DO UPDATE SET count = count + 1, sum = sum + excluded.sum,
				weighted = weighted + excluded.weighted, last = max(last, excluded.last)`,
				id, e.Amount, e.Amount*int64(m.StreamVersion+1), int64(m.StreamVersion))
			return err
		}))
	case "postgres":
		pool, err := pgxpool.New(ctx, o.Target)
		if err != nil {
			return err
		}
		defer pool.Close()
		if _, err := pool.Exec(ctx, accountsTable); err != nil {
			return err
		}
		st, err := postgres.New(ctx, pool, postgres.Config{})
		if err != nil {
			return err
		}
		return run(ctx, o, client, st, untilSynced, readmodel.On(Accounts, func(ctx context.Context, tx pgx.Tx, id string, e Deposited, m readmodel.Meta) error {
			// Queued: sent once per batch with the checkpoint, so that
			// the crash tests exercise batched writes.
			return postgres.Queue(ctx, tx, `INSERT INTO crash_accts (id, count, sum, weighted, last) VALUES ($1, 1, $2, $3, $4)
				ON CONFLICT (id) DO UPDATE SET count = crash_accts.count + 1, sum = crash_accts.sum + excluded.sum,
				weighted = crash_accts.weighted + excluded.weighted, last = greatest(crash_accts.last, excluded.last)`,
				id, e.Amount, e.Amount*int64(m.StreamVersion+1), int64(m.StreamVersion))
		}))
	case "mongodb":
		mc, err := mongo.Connect(options.Client().ApplyURI(o.Target))
		if err != nil {
			return err
		}
		defer mc.Disconnect(context.Background())
		st, err := mongodb.New(ctx, mc.Database(o.Database), mongodb.Config{})
		if err != nil {
			return err
		}
		return run(ctx, o, client, st, untilSynced, readmodel.On(Accounts, func(ctx context.Context, h *mongodb.Handle, id string, e Deposited, m readmodel.Meta) error {
			_, err := h.Collection("crash_accts").Upsert(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{
				{Key: "$inc", Value: bson.D{{Key: "count", Value: int64(1)}, {Key: "sum", Value: e.Amount}, {Key: "weighted", Value: e.Amount * int64(m.StreamVersion+1)}}},
				{Key: "$max", Value: bson.D{{Key: "last", Value: int64(m.StreamVersion)}}},
			})
			return err
		}))
	}
	return fmt.Errorf("crashproj: unknown store %q", o.Kind)
}

func run[T any](ctx context.Context, o Options, client *sierradb.Client, st readmodel.Store[T], untilSynced bool, hs ...readmodel.Handler[T]) error {
	r, err := readmodel.New(readmodel.Config[T]{
		Name: o.Name, Client: client, Store: st, Handlers: hs,
		BatchSize: o.BatchSize, BatchTimeout: 5 * time.Millisecond, MaxAttempts: 1000,
		RetryBackoff: 5 * time.Millisecond, MaxRetryBackoff: 100 * time.Millisecond, StoreRetries: -1,
	})
	if err != nil {
		return err
	}
	if !untilSynced {
		return r.Run(ctx)
	}
	if err := r.Start(); err != nil {
		return err
	}
	err = r.Sync(ctx)
	return errors.Join(err, r.Close())
}

// Read returns the committed read model.
func Read(ctx context.Context, o Options) (map[string]Acct, error) {
	out := make(map[string]Acct)
	switch o.Kind {
	case "file":
		st, err := file.Open(file.Config[Model]{Dir: o.Target, Format: codec.JSON, New: func() Model { return Model{} }})
		if err != nil {
			return nil, err
		}
		defer st.Close()
		err = st.Read(o.Name, func(m Model) {
			for k, v := range m {
				out[k] = v
			}
		})
		return out, err
	case "sqlite", "postgres":
		var rows interface {
			Next() bool
			Scan(...any) error
			Err() error
			Close()
		}
		if o.Kind == "sqlite" {
			db, err := sqlite.OpenDB(o.Target)
			if err != nil {
				return nil, err
			}
			defer db.Close()
			r, err := db.QueryContext(ctx, `SELECT id, count, sum, weighted, last FROM crash_accts`)
			if err != nil {
				return nil, err
			}
			rows = sqlRows{r}
		} else {
			conn, err := pgx.Connect(ctx, o.Target)
			if err != nil {
				return nil, err
			}
			defer conn.Close(ctx)
			r, err := conn.Query(ctx, `SELECT id, count, sum, weighted, last FROM crash_accts`)
			if err != nil {
				return nil, err
			}
			rows = r
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var a Acct
			if err := rows.Scan(&id, &a.Count, &a.Sum, &a.Weighted, &a.Last); err != nil {
				return nil, err
			}
			out[id] = a
		}
		return out, rows.Err()
	case "mongodb":
		mc, err := mongo.Connect(options.Client().ApplyURI(o.Target))
		if err != nil {
			return nil, err
		}
		defer mc.Disconnect(context.Background())
		cur, err := mc.Database(o.Database).Collection("crash_accts").Find(ctx, bson.D{})
		if err != nil {
			return nil, err
		}
		var docs []struct {
			ID   string `bson:"_id"`
			Acct `bson:",inline"`
		}
		if err := cur.All(ctx, &docs); err != nil {
			return nil, err
		}
		for _, d := range docs {
			out[d.ID] = d.Acct
		}
		return out, nil
	}
	return nil, fmt.Errorf("crashproj: unknown store %q", o.Kind)
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }
