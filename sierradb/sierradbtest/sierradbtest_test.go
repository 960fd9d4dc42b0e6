package sierradbtest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/sierradb/sierradbtest"
)

// The test binary doubles as a sierradb that cannot start: with
// SIERRADBTEST_BROKEN set it prints that text and exits with status 3.
func TestMain(m *testing.M) {
	if msg := os.Getenv("SIERRADBTEST_BROKEN"); msg != "" {
		fmt.Fprintln(os.Stderr, msg)
		os.Exit(3)
	}
	os.Exit(testservice.Main(m))
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func client(t *testing.T, addr string) *sierradb.Client {
	t.Helper()
	c, err := sierradb.New(sierradb.Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// binary returns the real sierradb, or skips (fails under CI) without one.
func binary(t *testing.T) string {
	t.Helper()
	bin, err := sierradbtest.Binary()
	if err != nil {
		sierradbtest.Unavailable(t, "%v", err)
	}
	return bin
}

// A server started on a directory and address of the test's choosing keeps
// its events across a restart there, and Close stops it cleanly.
func TestStartRestartKeepsData(t *testing.T) {
	binary(t)
	dir := t.TempDir()
	srv, err := sierradbtest.Start(ctxT(t), sierradbtest.Config{Dir: dir, Partitions: 8})
	if err != nil {
		t.Fatal(err)
	}
	c := client(t, srv.Addr())
	info, err := c.Hello(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Server != "sierradb" || info.Version != sierradbtest.Version || info.NumPartitions != 8 || info.PeerID != srv.PeerID() {
		t.Fatalf("HELLO = %+v, want sierradb %s with 8 partitions and peer %s", info, sierradbtest.Version, srv.PeerID())
	}
	if _, err := c.Append(ctxT(t), sierradb.NewEvent{StreamID: "sdbt-restart", Name: "Kept", ExpectedVersion: sierradb.ExpectEmpty}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("Close removed the caller's data directory: %v", err)
	}

	again, err := sierradbtest.Start(ctxT(t), sierradbtest.Config{Dir: dir, Addr: srv.Addr(), Partitions: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.PeerID() == srv.PeerID() {
		t.Fatal("the restarted server has the old peer id: it is not a new process")
	}
	var names []string
	for ev, err := range client(t, again.Addr()).ScanAll(ctxT(t), "sdbt-restart", 0) {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, ev.Name)
	}
	if len(names) != 1 || names[0] != "Kept" {
		t.Fatalf("after a restart the stream holds %v, want [Kept]", names)
	}
}

// A temporary directory is removed by Close.
func TestRunTRemovesItsDirectory(t *testing.T) {
	binary(t)
	var dir string
	t.Run("server", func(t *testing.T) {
		srv := sierradbtest.RunT(t)
		dir = srv.Dir()
		if _, err := client(t, srv.Addr()).Append(ctxT(t), sierradb.NewEvent{StreamID: "sdbt-runt", Name: "E", ExpectedVersion: sierradb.ExpectEmpty}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(srv.Output(), "ready to receive connections") {
			t.Fatalf("Output has no ready line:\n%s", srv.Output())
		}
	})
	if _, err := os.Stat(filepath.Dir(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the temporary directory of a closed server is still there: %v", err)
	}
}

// The port is taken by another SierraDB (the embedded one): the real server
// cannot bind it, and Start must not take the other server for its own even
// though it answers HELLO as "sierradb".
func TestStartRejectsAnotherServerOnItsPort(t *testing.T) {
	binary(t)
	other := embedded.RunT(t)
	_, err := sierradbtest.Start(ctxT(t), sierradbtest.Config{Addr: other.Addr()})
	if err == nil {
		t.Fatal("Start succeeded on a port held by another server")
	}
	if !strings.Contains(strings.ToLower(err.Error()), "address already in use") {
		t.Fatalf("Start error does not carry the server's output: %v", err)
	}
}

// fakeT records what the package does to a test.
type fakeT struct {
	testing.TB
	skipped, failed string
	cleanups        []func()
}

func (f *fakeT) Helper()                           {}
func (f *fakeT) Errorf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }
func (f *fakeT) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }
func (f *fakeT) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }
func (f *fakeT) Cleanup(fn func())                 { f.cleanups = append(f.cleanups, fn) }

// A missing binary skips locally and fails under CI=true.
func TestMissingBinarySkipsOrFails(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-sierradb")
	for _, ci := range []string{"", "true"} {
		t.Run("CI="+ci, func(t *testing.T) {
			t.Setenv("CI", ci)
			f := &fakeT{}
			if srv := sierradbtest.RunT(f, sierradbtest.Config{Binary: missing}); srv != nil {
				t.Fatal("RunT returned a server without a binary")
			}
			if ci == "" && (f.skipped == "" || f.failed != "") {
				t.Fatalf("locally: skipped %q, failed %q; want a skip", f.skipped, f.failed)
			}
			if ci == "true" && (f.failed == "" || f.skipped != "") {
				t.Fatalf("under CI: skipped %q, failed %q; want a failure", f.skipped, f.failed)
			}
			if msg := f.skipped + f.failed; !strings.Contains(msg, "no-sierradb") || !strings.Contains(msg, "not installed") {
				t.Fatalf("the reason does not name the binary: %q", msg)
			}
		})
	}
	t.Setenv(sierradbtest.EnvBin, missing)
	if _, err := sierradbtest.Binary(); !errors.Is(err, sierradbtest.ErrNotInstalled) {
		t.Fatalf("Binary with a missing $%s = %v", sierradbtest.EnvBin, err)
	}
}

// An installed binary that fails to start fails the test, locally too, and
// the failure shows what the program printed.
func TestFailedStartFailsWithOutput(t *testing.T) {
	t.Setenv("CI", "")
	t.Setenv("SIERRADBTEST_BROKEN", "fatal: cannot open data directory")
	f := &fakeT{}
	if srv := sierradbtest.RunT(f, sierradbtest.Config{Binary: os.Args[0]}); srv != nil {
		t.Fatal("RunT returned a server that did not start")
	}
	if f.skipped != "" || !strings.Contains(f.failed, "fatal: cannot open data directory") {
		t.Fatalf("skipped %q, failed %q; want a failure with the program's output", f.skipped, f.failed)
	}
}

func TestConfigValidate(t *testing.T) {
	err := sierradbtest.Config{Partitions: 70000, Addr: "nohost", StartTimeout: -1, StopTimeout: -1}.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad Config")
	}
	for _, want := range []string{"Partitions", "Addr", "StartTimeout", "StopTimeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error does not mention %s: %v", want, err)
		}
	}
	if err := (sierradbtest.Config{}).Validate(); err != nil {
		t.Fatalf("the zero Config is invalid: %v", err)
	}
}

// Shared honours $SIERRADB_ADDR, and checks that it is a SierraDB.
func TestSharedAddrFromEnvironment(t *testing.T) {
	srv := embedded.RunT(t)
	t.Setenv(sierradbtest.EnvAddr, srv.Addr())
	var s sierradbtest.Shared
	defer s.Close()
	if got := s.Addr(t); got != srv.Addr() {
		t.Fatalf("Addr = %q, want $%s = %q", got, sierradbtest.EnvAddr, srv.Addr())
	}
	t.Setenv(sierradbtest.EnvAddr, testservice.RequireRedis(t))
	f := &fakeT{}
	s.Addr(f)
	if !strings.Contains(f.failed, `server "redis"`) {
		t.Fatalf("a Redis named by $%s was accepted: failed %q", sierradbtest.EnvAddr, f.failed)
	}
}

// Shared starts one server for every caller until closed.
func TestSharedStartsOnce(t *testing.T) {
	binary(t)
	t.Setenv(sierradbtest.EnvAddr, "")
	var s sierradbtest.Shared
	a, b := s.Addr(t), s.Addr(t)
	if a == "" || a != b {
		t.Fatalf("two calls gave %q and %q, want one server", a, b)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c := s.Addr(t)
	defer s.Close()
	if err := client(t, c).Ping(ctxT(t)); err != nil {
		t.Fatalf("the server started after Close does not answer: %v", err)
	}
}
