package testservice

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Two Redis servers: each passes the identity check for itself and fails it
// for the other, though both answer PING and HELLO alike.
func TestRedisIdentity(t *testing.T) {
	RequireRedis(t) // skips (fails under CI) without redis-server
	a, err := StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := ownRedis(ctxT(t), a.Addr, a.Proc); err != nil {
		t.Fatalf("Redis a is not itself: %v", err)
	}
	if err := ownRedis(ctxT(t), a.Addr, b.Proc); err == nil || !strings.Contains(err.Error(), "not the one started here") {
		t.Fatalf("Redis a passed for b: %v", err)
	}
}

// The SierraDB embedded server is not Redis.
func TestRedisIdentityRejectsSierraDB(t *testing.T) {
	tg := SierraTargets()[0]
	addr := tg.Addr(t)
	if err := ownRedis(ctxT(t), addr, nil); err == nil || !strings.Contains(err.Error(), `server "sierradb"`) {
		t.Fatalf("the embedded SierraDB passed for Redis: %v", err)
	}
}

// A PostgreSQL passes the identity check only for its own data directory.
func TestPostgresIdentity(t *testing.T) {
	dsn := RequirePostgres(t)
	if os.Getenv(EnvPostgresDSN) != "" {
		t.Skip("POSTGRES_DSN names an outside server")
	}
	var dir string
	if err := pgQuery(ctxT(t), dsn, &dir); err != nil {
		t.Fatal(err)
	}
	if err := ownPostgres(ctxT(t), dsn, dir); err != nil {
		t.Fatalf("PostgreSQL is not itself: %v", err)
	}
	err := ownPostgres(ctxT(t), dsn, filepath.Join(t.TempDir(), "data"))
	if err == nil || !strings.Contains(err.Error(), "not on the cluster started here") {
		t.Fatalf("PostgreSQL passed for another data directory: %v", err)
	}
}

type fakeT struct {
	testing.TB
	skipped, failed string
}

func (f *fakeT) Helper()                           {}
func (f *fakeT) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }
func (f *fakeT) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }

// A missing program skips locally and fails in CI; a program that fails to
// start fails everywhere.
func TestRequireSkipOrFail(t *testing.T) {
	missing := fmt.Errorf("%w: no redis-server on PATH", errNotInstalled)
	broken := errors.New("redis-server exited: bad config")
	for _, tc := range []struct {
		ci       string
		err      error
		skip     bool
		contains string
	}{
		{"", missing, true, "no redis-server"},
		{"true", missing, false, "no redis-server"},
		{"", broken, false, "bad config"},
		{"true", broken, false, "bad config"},
	} {
		t.Setenv("CI", tc.ci)
		f := &fakeT{}
		require(f, "Redis", tc.err)
		got := f.skipped + f.failed
		if (f.skipped != "") != tc.skip || (f.failed != "") == tc.skip || !strings.Contains(got, tc.contains) {
			t.Errorf("CI=%q, %v: skipped %q, failed %q", tc.ci, tc.err, f.skipped, f.failed)
		}
	}
}
