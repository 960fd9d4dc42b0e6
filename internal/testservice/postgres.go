package testservice

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environment variables that steer RequirePostgres.
const (
	// EnvPostgresDSN points the tests at a running PostgreSQL instead of
	// starting one, e.g. postgres://user:pass@127.0.0.1:5432/db.
	EnvPostgresDSN = "POSTGRES_DSN"
	// EnvPostgresBinDir names the directory of initdb and postgres;
	// default: /usr/lib/postgresql/15/bin.
	EnvPostgresBinDir = "POSTGRES_BIN_DIR"
)

// PostgresServer is a throwaway PostgreSQL cluster run as a child process.
type PostgresServer struct {
	// DSN connects as the superuser "postgres" to the database "postgres".
	DSN  string
	Port int
	Proc *Process
	dir  string
}

// postgresBinDir finds initdb and postgres.
func postgresBinDir() (string, error) {
	dir := os.Getenv(EnvPostgresBinDir)
	if dir == "" {
		dir = "/usr/lib/postgresql/15/bin"
	}
	for _, b := range []string{"initdb", "postgres", "pg_isready"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("%w: no PostgreSQL binaries in %s ($%s; install Debian's postgresql-15): %v", errNotInstalled, dir, EnvPostgresBinDir, err)
		}
	}
	return dir, nil
}

// asPostgres returns the command line that runs bin with args: as is, or,
// when running as root (initdb and postgres refuse root), through
// "runuser -u postgres --". It also hands dir to that user.
func asPostgres(dir, bin string, args ...string) (string, []string, error) {
	if os.Geteuid() != 0 {
		return bin, args, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return "", nil, fmt.Errorf("running as root needs the postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	}); err != nil {
		return "", nil, err
	}
	runuser, err := exec.LookPath("runuser")
	if err != nil {
		return "", nil, fmt.Errorf("running as root needs runuser: %w", err)
	}
	return runuser, append([]string{"-u", "postgres", "--", bin}, args...), nil
}

// StartPostgres creates a cluster in a temporary directory (owned by the
// postgres user when running as root) and starts it on a free loopback
// port, trusting local connections. It waits until the server on that port
// is this one (its data directory is this cluster's). Stop it with Close.
func StartPostgres() (*PostgresServer, error) {
	bin, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "esmill-postgres-")
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	name, args, err := asPostgres(dir, filepath.Join(bin, "initdb"),
		"-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	name, prefix, err := asPostgres(dir, filepath.Join(bin, "postgres"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	p, addr, err := startOnFreePort(dir, name, func(_ string, port int) []string {
		return slices.Concat(prefix, []string{"-D", data, "-p", strconv.Itoa(port), "-k", dir,
			"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200",
			"-c", "shared_buffers=64MB", "-c", "log_min_messages=warning"})
	}, nil, 30*time.Second, func(ctx context.Context, addr string, _ *Process) error {
		return ownPostgres(ctx, postgresDSN(addr), data)
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting postgres: %w", err)
	}
	_, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	return &PostgresServer{DSN: postgresDSN(addr), Port: n, Proc: p, dir: dir}, nil
}

func postgresDSN(addr string) string {
	return fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", addr)
}

// ownPostgres checks that the server behind dsn runs on the data directory
// data: the cluster started here.
func ownPostgres(ctx context.Context, dsn, data string) error {
	var got string
	if err := pgQuery(ctx, dsn, &got); err != nil {
		return err
	}
	if filepath.Clean(got) != filepath.Clean(data) {
		return fmt.Errorf("the PostgreSQL at %s runs on %s, not on the cluster started here (%s)", dsn, got, data)
	}
	return nil
}

// Close stops the server with a fast shutdown (SIGINT), kills it if it
// lingers, and removes its directory.
func (s *PostgresServer) Close() {
	s.Proc.StopInterrupt(10 * time.Second)
	os.RemoveAll(s.dir)
}

// RequirePostgres returns the DSN of a PostgreSQL for t: POSTGRES_DSN, or a
// throwaway cluster started for this test binary (stopped by Main). Tests
// share it: give each its own schema or tables. Without the binaries, t is
// skipped, or failed under CI=true; binaries that fail to start fail t.
func RequirePostgres(t testing.TB) string {
	t.Helper()
	if dsn := os.Getenv(EnvPostgresDSN); dsn != "" {
		return dsn
	}
	dsn, err := shared("postgres", func() (string, func(), error) {
		s, err := StartPostgres()
		if err != nil {
			return "", nil, err
		}
		return s.DSN, s.Close, nil
	})
	if err != nil {
		require(t, "PostgreSQL", err)
	}
	return dsn
}

// pgQuery reads the data directory of the server behind dsn.
func pgQuery(ctx context.Context, dsn string, dir *string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.QueryRow(ctx, "SHOW data_directory").Scan(dir)
}

// PostgresSchema creates a schema of its own in the test PostgreSQL (see
// RequirePostgres) and returns a DSN whose search_path is that schema, for
// programs that take only a DSN (URL form).
func PostgresSchema(ctx context.Context, t testing.TB, prefix string) string {
	t.Helper()
	dsn := RequirePostgres(t)
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	schema := prefix + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to the test PostgreSQL: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "search_path=" + schema
}
