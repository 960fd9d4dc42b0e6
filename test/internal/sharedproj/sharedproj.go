// Package sharedproj is the projection of the multi-process sharing tests:
// several instances (processes) of one projection divide the partitions
// under leases kept in the projection's own store, and each applied event
// becomes one row, unique on its position, naming the instance that
// applied it. An event applied twice would break the uniqueness: the
// handler then marks the event poison, so that it is parked and counted.
// Each instance writes its status (owned partitions, state) to a file
// every 50ms.
package sharedproj

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/lease"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/file"
	"github.com/esmill/esmill/readmodel/postgres"
	"github.com/esmill/esmill/readmodel/sqlite"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/test/internal/crashproj"
)

// Options says where an instance runs.
type Options struct {
	Kind       string // file, sqlite or postgres
	Target     string // directory, database file or DSN
	SierraAddr string
	Name       string
	Instance   string
	BatchSize  int
	LeaseTTL   time.Duration
	StatusDir  string
}

// Row is one applied event.
type Row struct {
	EventID  string `json:"event_id"`
	Instance string `json:"instance"`
}

// Model is the file store's read model: position → row.
type Model map[string]Row

// Status is what an instance writes to its status file.
type Status struct {
	Instance  string    `json:"instance"`
	State     string    `json:"state"`
	Owned     []uint16  `json:"owned"`
	Handled   uint64    `json:"handled"`
	Conflicts uint64    `json:"conflicts"`
	At        time.Time `json:"at"`
	Err       string    `json:"err,omitempty"`
}

const eventsTable = `CREATE TABLE IF NOT EXISTS shared_applied (partition_id integer NOT NULL, sequence bigint NOT NULL,
	event_id text NOT NULL, instance text NOT NULL, PRIMARY KEY (partition_id, sequence))`

// errTwice marks the handler's error when a position is applied again.
func twice(pos readmodel.Position, err error) error {
	return esmill.MarkPoison(fmt.Errorf("applied twice: position %s: %w", pos, err))
}

// Run runs one instance until ctx is done.
func Run(ctx context.Context, o Options) error {
	client, err := sierradb.New(sierradb.Config{Addr: o.SierraAddr, ReconnectMinBackoff: 10 * time.Millisecond, ReconnectMaxBackoff: 200 * time.Millisecond})
	if err != nil {
		return err
	}
	defer client.Close()
	switch o.Kind {
	case "file":
		st, err := file.Open(file.Config[Model]{Dir: o.Target, Format: codec.CBOR, New: func() Model { return Model{} }, NoSync: true})
		if err != nil {
			return err
		}
		defer st.Close()
		return run(ctx, o, client, st, st.Leases(), readmodel.On(crashproj.Accounts, func(ctx context.Context, tx *file.Tx[Model], id string, e crashproj.Deposited, m readmodel.Meta) error {
			key := m.Position.String()
			if _, dup := (*tx.Model())[key]; dup {
				return twice(m.Position, errors.New("the model has a row for it"))
			}
			(*tx.Model())[key] = Row{EventID: m.EventID.String(), Instance: o.Instance}
			return nil
		}))
	case "sqlite":
		db, err := sqlite.OpenDB(o.Target)
		if err != nil {
			return err
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, eventsTable); err != nil {
			return err
		}
		st, err := sqlite.New(ctx, db, sqlite.Config{})
		if err != nil {
			return err
		}
		return run(ctx, o, client, st, st.Leases(), readmodel.On(crashproj.Accounts, func(ctx context.Context, tx *sql.Tx, id string, e crashproj.Deposited, m readmodel.Meta) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO shared_applied (partition_id, sequence, event_id, instance) VALUES (?, ?, ?, ?)`,
				m.Position.Partition, int64(m.Position.Sequence), m.EventID.String(), o.Instance)
			if err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed") {
				return twice(m.Position, err)
			}
			return err
		}))
	case "postgres":
		pool, err := pgxpool.New(ctx, o.Target)
		if err != nil {
			return err
		}
		defer pool.Close()
		// Instances start at once: CREATE TABLE IF NOT EXISTS is not safe
		// against itself in PostgreSQL (the loser gets a unique violation
		// or "type already exists"), so the creations take turns under
		// a transaction-scoped advisory lock, as the store's own do.
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7301)`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, eventsTable)
			return err
		}); err != nil {
			return err
		}
		st, err := postgres.New(ctx, pool, postgres.Config{})
		if err != nil {
			return err
		}
		return run(ctx, o, client, st, st.Leases(), readmodel.On(crashproj.Accounts, func(ctx context.Context, tx pgx.Tx, id string, e crashproj.Deposited, m readmodel.Meta) error {
			// Queued: sent once per batch with the checkpoint. A second
			// application fails when the batch is sent, and is parked
			// with the duplicate key's SQLSTATE 23505, which the test
			// counts as applied twice.
			err := postgres.Queue(ctx, tx, `INSERT INTO shared_applied (partition_id, sequence, event_id, instance) VALUES ($1, $2, $3, $4)`,
				int32(m.Position.Partition), int64(m.Position.Sequence), m.EventID.String(), o.Instance)
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "23505" {
				return twice(m.Position, err)
			}
			return err
		}))
	}
	return fmt.Errorf("sharedproj: unknown store %q", o.Kind)
}

func run[T any](ctx context.Context, o Options, client *sierradb.Client, st readmodel.Store[T], leases lease.Store, h readmodel.Handler[T]) error {
	r, err := readmodel.New(readmodel.Config[T]{
		Name: o.Name, Client: client, Store: st, Handlers: []readmodel.Handler[T]{h},
		BatchSize: o.BatchSize, BatchTimeout: 5 * time.Millisecond, MaxAttempts: 3,
		RetryBackoff: 5 * time.Millisecond, MaxRetryBackoff: 100 * time.Millisecond, StoreRetries: -1,
		LagInterval: 100 * time.Millisecond, Leases: leases, Instance: o.Instance, LeaseTTL: o.LeaseTTL,
	})
	if err != nil {
		return err
	}
	if err := r.Start(); err != nil {
		return err
	}
	defer r.Close()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		writeStatus(o, r.Status())
		select {
		case <-ctx.Done():
			return r.Close()
		case <-r.Done():
			writeStatus(o, r.Status())
			return r.Err()
		case <-t.C:
		}
	}
}

func writeStatus(o Options, s readmodel.Status) {
	out := Status{Instance: o.Instance, State: s.State.String(), Handled: s.Handled, Conflicts: s.Conflicts, At: time.Now()}
	for _, p := range s.Partitions {
		if p.Owned {
			out.Owned = append(out.Owned, p.Partition)
		}
	}
	if s.Err != nil {
		out.Err = s.Err.Error()
	}
	b, _ := json.Marshal(out)
	path := filepath.Join(o.StatusDir, o.Instance+".status")
	tmp := path + ".tmp"
	if os.WriteFile(tmp, b, 0o644) == nil {
		os.Rename(tmp, path)
	}
}

// ReadStatus reads an instance's status file.
func ReadStatus(dir, instance string) (Status, error) {
	var s Status
	b, err := os.ReadFile(filepath.Join(dir, instance+".status"))
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

// Read returns the applied rows by position ("p:s"), and the parked
// events' reasons.
func Read(ctx context.Context, o Options) (map[string]Row, []string, error) {
	out := make(map[string]Row)
	var parked []readmodel.ParkedEvent
	switch o.Kind {
	case "file":
		st, err := file.Open(file.Config[Model]{Dir: o.Target, Format: codec.CBOR, New: func() Model { return Model{} }})
		if err != nil {
			return nil, nil, err
		}
		defer st.Close()
		if err := st.Read(o.Name, func(m Model) { maps.Copy(out, m) }); err != nil {
			return nil, nil, err
		}
		if parked, err = st.Parked(ctx, o.Name); err != nil {
			return nil, nil, err
		}
	case "sqlite":
		db, err := sqlite.OpenDB(o.Target)
		if err != nil {
			return nil, nil, err
		}
		defer db.Close()
		rows, err := db.QueryContext(ctx, `SELECT partition_id, sequence, event_id, instance FROM shared_applied`)
		if err != nil {
			return nil, nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var p, s int64
			var r Row
			if err := rows.Scan(&p, &s, &r.EventID, &r.Instance); err != nil {
				return nil, nil, err
			}
			out[fmt.Sprintf("%d:%d", p, s)] = r
		}
		if err := rows.Err(); err != nil {
			return nil, nil, err
		}
		st, err := sqlite.New(ctx, db, sqlite.Config{})
		if err != nil {
			return nil, nil, err
		}
		if parked, err = st.Parked(ctx, o.Name); err != nil {
			return nil, nil, err
		}
	case "postgres":
		pool, err := pgxpool.New(ctx, o.Target)
		if err != nil {
			return nil, nil, err
		}
		defer pool.Close()
		rows, err := pool.Query(ctx, `SELECT partition_id, sequence, event_id, instance FROM shared_applied`)
		if err != nil {
			return nil, nil, err
		}
		for rows.Next() {
			var p int32
			var s int64
			var r Row
			if err := rows.Scan(&p, &s, &r.EventID, &r.Instance); err != nil {
				rows.Close()
				return nil, nil, err
			}
			out[fmt.Sprintf("%d:%d", p, s)] = r
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, err
		}
		st, err := postgres.New(ctx, pool, postgres.Config{})
		if err != nil {
			return nil, nil, err
		}
		if parked, err = st.Parked(ctx, o.Name); err != nil {
			return nil, nil, err
		}
	default:
		return nil, nil, fmt.Errorf("sharedproj: unknown store %q", o.Kind)
	}
	var reasons []string
	for _, p := range parked {
		reasons = append(reasons, p.Position.String()+": "+p.Reason)
	}
	return out, reasons, nil
}
