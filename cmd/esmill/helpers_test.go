package main_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esmill/esmill/cmd/esmill/internal/shop"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/esadmin"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/readmodel/postgres"
	"github.com/esmill/esmill/sierradb"
)

func TestMain(m *testing.M) { os.Exit(testservice.Main(m)) }

var (
	buildMu  sync.Mutex
	builtDir string
	built    = map[string]string{}
)

// build builds a program of the module once per test binary.
func build(t *testing.T, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if bin, ok := built[pkg]; ok {
		return bin
	}
	if builtDir == "" {
		d, err := os.MkdirTemp("", "esmill-e2e-")
		if err != nil {
			t.Fatal(err)
		}
		builtDir = d
	}
	bin := filepath.Join(builtDir, filepath.Base(pkg))
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.Command(goBin, "build", "-race", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	built[pkg] = bin
	return bin
}

// env is one test's services, named to the programs by environment
// variables.
type env struct {
	t      *testing.T
	ctx    context.Context
	vars   []string
	prefix string
	client *sierradb.Client
	pool   *pgxpool.Pool
	store  *postgres.Store
	// model is what the read model must hold once every deposit is
	// applied.
	model map[string]shop.Row
	// versions is each stream's last version.
	versions map[string]int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	sierra := testservice.RequireSierraDB(t)
	dsn := testservice.RequirePostgres(t)
	ctx := t.Context()
	var b [4]byte
	rand.Read(b[:])
	e := &env{t: t, ctx: ctx, prefix: "t" + hex.EncodeToString(b[:]) + "_", model: map[string]shop.Row{}, versions: map[string]int64{}}
	e.vars = []string{esadmin.EnvSierraDB + "=" + sierra, esadmin.EnvPostgres + "=" + dsn, esadmin.EnvTablePrefix + "=" + e.prefix}
	client, err := sierradb.New(sierradb.Config{Addr: sierra})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	e.client = client
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	e.pool = pool
	if _, err := pool.Exec(ctx, shop.Schema(e.prefix)); err != nil {
		t.Fatal(err)
	}
	if e.store, err = postgres.New(ctx, pool, postgres.Config{TablePrefix: e.prefix}); err != nil {
		t.Fatal(err)
	}
	return e
}

// deposit appends a deposit to account id, as kameo_es writes it: CBOR
// payload, metadata with a command, a causation and a trace context.
func (e *env) deposit(id string, amount int64, apply bool) sierradb.AppendResult {
	e.t.Helper()
	id = e.id(id)
	stream := shop.Category + "-" + id
	name, payload, err := shop.Accounts.EncodeEvent(shop.Deposited{Amount: amount})
	if err != nil {
		e.t.Fatal(err)
	}
	meta, err := codec.EncodeMetadata(codec.Metadata{
		Command:     "Deposit",
		Causation:   &codec.Causation{EventID: sierradb.NewEventID(sierradb.StreamPartitionKey("pay-1")), StreamID: "pay-1", StreamVersion: 7},
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		CommandID:   fmt.Sprintf("cmd-%s-%d", id, amount),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	v, ok := e.versions[stream]
	if !ok {
		v = -1
	}
	res, err := e.client.Append(e.ctx, sierradb.NewEvent{StreamID: stream, Name: name, Payload: payload, Metadata: meta,
		ExpectedVersion: sierradb.ExpectAfter(v)})
	if err != nil {
		e.t.Fatal(err)
	}
	e.versions[stream] = v + 1
	if apply {
		r := e.model[id]
		r.N++
		r.Total += amount
		e.model[id] = r
	}
	return res
}

// id makes an account id unique to the test run, so that runs against
// one server (SIERRADB_ADDR) do not share streams.
func (e *env) id(short string) string { return short + "_" + e.prefix }

// stream is the stream of account short.
func (e *env) stream(short string) string { return shop.Category + "-" + e.id(short) }

// checkModel fails unless the read model is e.model.
func (e *env) checkModel(what string) {
	e.t.Helper()
	all, err := shop.Read(e.ctx, e.pool, e.prefix)
	if err != nil {
		e.t.Fatal(err)
	}
	// Only this run's accounts: a server named by SIERRADB_ADDR may hold
	// other runs'.
	got := make(map[string]shop.Row)
	for id, r := range all {
		if strings.HasSuffix(id, "_"+e.prefix) {
			got[id] = r
		}
	}
	if len(got) != len(e.model) {
		e.t.Fatalf("%s: the read model has %d accounts, want %d", what, len(got), len(e.model))
	}
	for id, want := range e.model {
		if got[id] != want {
			e.t.Fatalf("%s: account %s is %+v, want %+v", what, id, got[id], want)
		}
	}
}

// result is a finished run of a program.
type result struct {
	stdout, stderr string
	code           int
}

// run runs a program to its end (within a minute).
func (e *env) run(bin string, args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), e.vars...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		e.t.Fatalf("%s %v: %v", bin, args, err)
	}
	return result{out.String(), errb.String(), code}
}

// ok runs a program that must succeed.
func (e *env) ok(bin string, args ...string) string {
	e.t.Helper()
	r := e.run(bin, args...)
	if r.code != 0 {
		e.t.Fatalf("%s %s: exit %d\nstdout: %s\nstderr: %s", filepath.Base(bin), strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// decode reads one JSON value.
func decode[V any](t *testing.T, s string) V {
	t.Helper()
	var v V
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON (%v): %q", err, s)
	}
	return v
}

// eventually polls cond every 50ms for up to 30s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
