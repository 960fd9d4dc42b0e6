package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/lease"
	"github.com/esmill/esmill/lease/leasetest"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/checkpointtest"
	"github.com/esmill/esmill/readmodel/postgres"
)

func TestMain(m *testing.M) { os.Exit(testservice.Main(m)) }

// newSchema creates a schema of its own for t and returns a pool whose
// search_path is that schema.
func newSchema(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	dsn := testservice.RequirePostgres(t)
	ctx := context.Background()
	var b [6]byte
	rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	return openPool(t, dsn, schema), schema
}

func openPool(t testing.TB, dsn, schema string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func newStore(t testing.TB, pool *pgxpool.Pool) *postgres.Store {
	t.Helper()
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS rm (projection text, key text, value int8 NOT NULL, PRIMARY KEY (projection, key))`); err != nil {
		t.Fatal(err)
	}
	s, err := postgres.New(ctx, pool, postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	schemas := map[readmodel.Store[pgx.Tx]]string{}
	checkpointtest.Run(t, checkpointtest.Harness[pgx.Tx]{
		New: func(t testing.TB) readmodel.Store[pgx.Tx] {
			pool, schema := newSchema(t)
			s := newStore(t, pool)
			schemas[s] = schema
			return s
		},
		Reopen: func(t testing.TB, old readmodel.Store[pgx.Tx]) readmodel.Store[pgx.Tx] {
			old.(*postgres.Store).Pool().Close()
			s := newStore(t, openPool(t, testservice.RequirePostgres(t), schemas[old]))
			schemas[s] = schemas[old]
			return s
		},
		Add: func(ctx context.Context, tx pgx.Tx, projection, key string, delta int64) error {
			_, err := tx.Exec(ctx, `INSERT INTO rm (projection, key, value) VALUES ($1, $2, $3)
				ON CONFLICT (projection, key) DO UPDATE SET value = rm.value + excluded.value`, projection, key, delta)
			return err
		},
		Get: func(ctx context.Context, st readmodel.Store[pgx.Tx], projection, key string) (int64, bool, error) {
			var v int64
			err := st.(*postgres.Store).Pool().QueryRow(ctx, `SELECT value FROM rm WHERE projection = $1 AND key = $2`, projection, key).Scan(&v)
			if errors.Is(err, pgx.ErrNoRows) {
				return 0, false, nil
			}
			return v, err == nil, err
		},
		Drop: func(ctx context.Context, tx pgx.Tx, projection string) error {
			_, err := tx.Exec(ctx, `DELETE FROM rm WHERE projection = $1`, projection)
			return err
		},
	})
}

// While one batch transaction of a projection is open, another one cannot
// begin (after LockWait); other projections are not affected.
func TestAdvisoryLock(t *testing.T) {
	pool, _ := newSchema(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS rm (projection text, key text, value int8 NOT NULL, PRIMARY KEY (projection, key))`); err != nil {
		t.Fatal(err)
	}
	s, err := postgres.New(ctx, pool, postgres.Config{LockWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := s.Begin(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Begin(ctx, "p"); !errors.Is(err, readmodel.ErrCheckpointConflict) {
		t.Fatalf("second Begin = %v, want ErrCheckpointConflict", err)
	}
	other, err := s.Begin(ctx, "q")
	if err != nil {
		t.Fatalf("Begin of another projection: %v", err)
	}
	other.Rollback(ctx)
	// A waiting Begin gets the lock when the holder ends, and its
	// handlers are not bound by the lock wait.
	got := make(chan error, 1)
	s2, err := postgres.New(ctx, pool, postgres.Config{LockWait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		tx2, err := s2.Begin(ctx, "p")
		if err == nil {
			var timeout string
			err = tx2.Handle(readmodel.Position{}).QueryRow(ctx, `SHOW lock_timeout`).Scan(&timeout)
			if err == nil && timeout != "0" {
				err = errors.New("lock_timeout inside the batch = " + timeout)
			}
			tx2.Rollback(ctx)
		}
		got <- err
	}()
	// Wait until it waits for the lock.
	for deadline := time.Now().Add(10 * time.Second); ; {
		var waiting int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second Begin does not wait for the lock")
		}
		time.Sleep(5 * time.Millisecond)
	}
	tx.Rollback(ctx)
	if err := <-got; err != nil {
		t.Fatalf("waiting Begin: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (postgres.Config{TablePrefix: "bad-prefix"}).Validate(); err == nil {
		t.Fatal("invalid prefix accepted")
	}
}

// TestLeaseContract runs the lease contract against the store's leases.
func TestLeaseContract(t *testing.T) {
	pool, _ := newSchema(t)
	s := newStore(t, pool).Leases()
	leasetest.Run(t, func(*testing.T) lease.Store { return s }, 300*time.Millisecond)
}

// Batches that advance different partitions (of instances sharing the
// projection) do not wait for each other; two of one partition do.
func TestBeginPartitions(t *testing.T) {
	pool, _ := newSchema(t)
	ctx := context.Background()
	s, err := postgres.New(ctx, pool, postgres.Config{LockWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.BeginPartitions(ctx, "p", []uint16{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Rollback(ctx)
	b, err := s.BeginPartitions(ctx, "p", []uint16{3})
	if err != nil {
		t.Fatalf("a batch of another partition waited: %v", err)
	}
	if err := b.Commit(ctx, []readmodel.Advance{{Partition: 3, Prev: -1, Next: 0}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BeginPartitions(ctx, "p", []uint16{2, 4}); !errors.Is(err, readmodel.ErrCheckpointConflict) {
		t.Fatalf("a second batch of partition 2 = %v, want ErrCheckpointConflict after LockWait", err)
	}
	if err := a.Commit(ctx, []readmodel.Advance{{Partition: 1, Prev: -1, Next: 5}, {Partition: 2, Prev: -1, Next: 7}}); err != nil {
		t.Fatal(err)
	}
	c, err := s.BeginPartitions(ctx, "p", []uint16{2, 4})
	if err != nil {
		t.Fatalf("after the first batch committed: %v", err)
	}
	c.Rollback(ctx)
	if cps, err := s.Checkpoints(ctx, "p"); err != nil || len(cps) != 3 || cps[1] != 5 || cps[2] != 7 || cps[3] != 0 {
		t.Fatalf("checkpoints %v, %v", cps, err)
	}
}

func TestIsTransient(t *testing.T) {
	pool, _ := newSchema(t)
	s := newStore(t, pool)
	for code, want := range map[string]bool{"40P01": true, "40001": true, "23505": false} {
		err := fmt.Errorf("handler: %w", &pgconn.PgError{Code: code})
		if got := s.IsTransient(err); got != want {
			t.Errorf("IsTransient(%s) = %v, want %v", code, got, want)
		}
	}
	if s.IsTransient(errors.New("plain")) {
		t.Error("a plain error is transient")
	}
}
