package proc_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/esmill/esmill/internal/proc"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb/embedded"
)

// The test binary doubles as a child program: with PROC_TEST_CHILD set it
// prints that line and exits with status 3 instead of running the tests;
// with PROC_TEST_SLEEP set it prints that line and waits to be stopped.
func TestMain(m *testing.M) {
	if msg := os.Getenv("PROC_TEST_CHILD"); msg != "" {
		fmt.Println(msg)
		os.Exit(3)
	}
	if msg := os.Getenv("PROC_TEST_SLEEP"); msg != "" {
		fmt.Println(msg)
		time.Sleep(time.Hour)
		os.Exit(0)
	}
	os.Exit(testservice.Main(m))
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestHelloEmbedded(t *testing.T) {
	srv := embedded.RunT(t)
	info, err := proc.Hello(ctxT(t), srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if info["server"] != "sierradb" || info["version"] == "" || info["peer_id"] == "" || info["num_partitions"] != "32" {
		t.Fatalf("HELLO = %v", info)
	}
	if err := proc.CheckHello(srv.Addr(), "sierradb")(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// A Redis answers PING like SierraDB does; HELLO tells them apart.
func TestCheckHelloTellsRedisFromSierraDB(t *testing.T) {
	addr := testservice.RequireRedis(t)
	info, err := proc.Hello(ctxT(t), addr)
	if err != nil {
		t.Fatal(err)
	}
	if info["server"] != "redis" || info["modules"] != "…" {
		t.Fatalf("HELLO = %v", info)
	}
	err = proc.CheckHello(addr, "sierradb")(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), `server "redis"`) {
		t.Fatalf("CheckHello(redis, sierradb) = %v, want a mismatch naming redis", err)
	}
	if pong, err := proc.Do(ctxT(t), addr, "PING"); err != nil || pong != "PONG" {
		t.Fatalf("PING = %q, %v", pong, err)
	}
	if _, err := proc.Do(ctxT(t), addr, "NOSUCHCOMMAND"); err == nil {
		t.Fatal("an unknown command gave no error")
	}
}

func TestHelloNoServer(t *testing.T) {
	port, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proc.Hello(ctxT(t), fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		t.Fatal("HELLO to a closed port succeeded")
	}
}

// A child that exits before it is ready is reported at once, with its
// output, not after the timeout.
func TestWaitReadyReportsExitWithOutput(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PROC_TEST_CHILD", "cannot start: no such config")
	p, err := proc.Start(dir, os.Args[0], nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = p.WaitReady(context.Background(), time.Minute, func(context.Context) error { return errors.New("not yet") })
	if !errors.Is(err, proc.ErrExited) || !strings.Contains(err.Error(), "cannot start: no such config") {
		t.Fatalf("WaitReady = %v, want ErrExited with the output", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("WaitReady took %s to notice the exit", d)
	}
	if p.ExitErr() == nil {
		t.Fatal("ExitErr is nil for a child that exited with status 3")
	}
}

func TestWaitReadyTimesOutAndStop(t *testing.T) {
	dir := t.TempDir()
	p, err := proc.Start(dir, os.Args[0], nil, []string{"PROC_TEST_SLEEP=up and running"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	if err := p.WaitReady(context.Background(), 20*time.Second, p.LogContains("up and running")); err != nil {
		t.Fatalf("WaitReady on a line the child prints: %v", err)
	}
	err = p.WaitReady(context.Background(), 200*time.Millisecond, p.LogContains("never printed"))
	if err == nil || errors.Is(err, proc.ErrExited) || !strings.Contains(err.Error(), "not ready after") ||
		!strings.Contains(err.Error(), "up and running") {
		t.Fatalf("WaitReady = %v, want a timeout that shows the output", err)
	}
	p.Stop(20 * time.Second)
	select {
	case <-p.Exited():
	default:
		t.Fatal("Stop returned before the child exited")
	}
	if proc.GracefulStop && p.ExitErr() == nil {
		t.Fatal("a child stopped by SIGTERM reports a clean exit")
	}
}
