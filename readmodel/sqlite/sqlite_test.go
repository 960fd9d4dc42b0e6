package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/esmill/esmill/lease"
	"github.com/esmill/esmill/lease/leasetest"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/checkpointtest"
	"github.com/esmill/esmill/readmodel/sqlite"
)

func open(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	db, err := sqlite.OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS rm (projection TEXT, key TEXT, value INTEGER NOT NULL, PRIMARY KEY (projection, key))`); err != nil {
		t.Fatal(err)
	}
	s, err := sqlite.New(ctx, db, sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	paths := map[readmodel.Store[*sql.Tx]]string{}
	checkpointtest.Run(t, checkpointtest.Harness[*sql.Tx]{
		New: func(t testing.TB) readmodel.Store[*sql.Tx] {
			path := filepath.Join(t.TempDir(), "rm.db")
			s := open(t, path)
			paths[s] = path
			return s
		},
		Reopen: func(t testing.TB, old readmodel.Store[*sql.Tx]) readmodel.Store[*sql.Tx] {
			old.(*sqlite.Store).DB().Close()
			s := open(t, paths[old])
			paths[s] = paths[old]
			return s
		},
		Add: func(ctx context.Context, tx *sql.Tx, projection, key string, delta int64) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO rm (projection, key, value) VALUES (?, ?, ?)
				ON CONFLICT (projection, key) DO UPDATE SET value = value + excluded.value`, projection, key, delta)
			return err
		},
		Get: func(ctx context.Context, st readmodel.Store[*sql.Tx], projection, key string) (int64, bool, error) {
			var v int64
			err := st.(*sqlite.Store).DB().QueryRowContext(ctx, `SELECT value FROM rm WHERE projection = ? AND key = ?`, projection, key).Scan(&v)
			if errors.Is(err, sql.ErrNoRows) {
				return 0, false, nil
			}
			return v, err == nil, err
		},
		Drop: func(ctx context.Context, tx *sql.Tx, projection string) error {
			_, err := tx.ExecContext(ctx, `DELETE FROM rm WHERE projection = ?`, projection)
			return err
		},
	})
}

func TestConfigValidate(t *testing.T) {
	for _, p := range []string{"x;", "a b", "1x"} {
		if err := (sqlite.Config{TablePrefix: p}).Validate(); err == nil {
			t.Errorf("TablePrefix %q accepted", p)
		}
	}
}

// TestLeaseContract runs the lease contract against the store's leases.
func TestLeaseContract(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "rm.db")).Leases()
	leasetest.Run(t, func(*testing.T) lease.Store { return s }, 300*time.Millisecond)
}
