package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/esmill/esmill/internal/leakcheck"
	"github.com/esmill/esmill/internal/testservice"
)

// helperEnv makes the test binary run main() with the arguments after "--".
const helperEnv = "SIERRADB_EMBEDDED_MAIN_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		for i, a := range os.Args {
			if a == "--" {
				os.Args = append([]string{os.Args[0]}, os.Args[i+1:]...)
				break
			}
		}
		main()
		os.Exit(0)
	}
	os.Exit(leakcheck.Main(m))
}

var readyRE = regexp.MustCompile(`ready to receive connections on (\S+?)"?\n`)

// waitReady polls the log for the ready line and returns the address.
func waitReady(t *testing.T, log func() string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := readyRE.FindStringSubmatch(log()); m != nil {
			return m[1]
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("no ready line in %q", log())
	return ""
}

// roundTrip sends raw RESP3 requests and reads n reply lines.
func roundTrip(t *testing.T, addr, req string, lines int) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	var out strings.Builder
	for range lines {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v (got %q)", err, out.String())
		}
		out.WriteString(l)
	}
	return out.String()
}

func start(t *testing.T, args ...string) (addr string, stop func() string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var log testservice.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, &log) }()
	addr = waitReady(t, log.String)
	return addr, func() string {
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("run: %v", err)
		}
		return log.String()
	}
}

func TestRunServes(t *testing.T) {
	addr, stop := start(t, "-addr", "127.0.0.1:0", "-partitions", "4")
	if got := roundTrip(t, addr, "*1\r\n$4\r\nPING\r\n", 1); got != "+PONG\r\n" {
		t.Fatalf("PING: %q", got)
	}
	hello := roundTrip(t, addr, "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n", 16)
	if !strings.HasSuffix(hello, "$14\r\nnum_partitions\r\n:4\r\n") {
		t.Fatalf("HELLO: %q", hello)
	}
	// Strict versioning by default.
	if got := roundTrip(t, addr, "*3\r\n$7\r\nEAPPEND\r\n$1\r\ns\r\n$1\r\ne\r\n", 1); !strings.HasPrefix(got, "-INVALIDARG strict") {
		t.Fatalf("EAPPEND without EXPECTED_VERSION: %q", got)
	}
	if log := stop(); !strings.Contains(log, "goodbye") {
		t.Fatalf("log: %s", log)
	}
}

func TestRunRelaxedAndDir(t *testing.T) {
	dir := t.TempDir()
	addr, stop := start(t, "-addr", "127.0.0.1:0", "-dir", dir, "-relaxed-versioning")
	if got := roundTrip(t, addr, "*3\r\n$7\r\nEAPPEND\r\n$1\r\ns\r\n$1\r\ne\r\n", 1); got != "%6\r\n" {
		t.Fatalf("EAPPEND: %q", got)
	}
	stop()
	addr, stop = start(t, "-addr", "127.0.0.1:0", "-dir", dir)
	if got := roundTrip(t, addr, "*2\r\n$5\r\nESVER\r\n$1\r\ns\r\n", 1); got != ":0\r\n" {
		t.Fatalf("ESVER after restart: %q", got)
	}
	stop()
}

func TestRunFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-partitions", "0"},
		{"-partitions", "65536"},
		{"-nope"},
		{"extra"},
		{"-addr", "no-port"},
	} {
		err := run(context.Background(), args, io.Discard)
		if err == nil {
			t.Fatalf("run(%q) succeeded", args)
		}
	}
}

// TestSignalStopsCleanly runs the real main in a child process and stops it
// with SIGTERM.
func TestSignalStopsCleanly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd := exec.Command(os.Args[0], "-test.run=^$", "--", "-addr", "127.0.0.1:0")
		cmd.Env = append(os.Environ(), helperEnv+"=1")
		var log testservice.SyncBuffer
		cmd.Stderr = &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		addr := waitReady(t, log.String)
		if got := roundTrip(t, addr, "*1\r\n$4\r\nPING\r\n", 1); got != "+PONG\r\n" {
			t.Fatalf("PING: %q", got)
		}
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%v: exit %v; log:\n%s", sig, err, log.String())
		}
		if !strings.Contains(log.String(), "goodbye") {
			t.Fatalf("%v: log:\n%s", sig, log.String())
		}
	}
}

// TestRunSalvage: a damaged log refuses to start, naming the file and the
// offset; -salvage starts with what precedes the damage and prints what was
// dropped.
func TestRunSalvage(t *testing.T) {
	dir := t.TempDir()
	addr, stop := start(t, "-addr", "127.0.0.1:0", "-dir", dir, "-partitions", "1")
	for _, ev := range []string{"empty", "0"} {
		req := "*5\r\n$7\r\nEAPPEND\r\n$1\r\ns\r\n$1\r\ne\r\n$16\r\nEXPECTED_VERSION\r\n$" +
			strconv.Itoa(len(ev)) + "\r\n" + ev + "\r\n"
		if got := roundTrip(t, addr, req, 1); got != "%6\r\n" {
			t.Fatalf("EAPPEND: %q", got)
		}
	}
	stop()
	path := filepath.Join(dir, "partition-00000.log")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-3] ^= 0xff // inside the last record's body
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var log testservice.SyncBuffer
	err = run(context.Background(), []string{"-addr", "127.0.0.1:0", "-dir", dir, "-partitions", "1"}, &log)
	if err == nil || !strings.Contains(err.Error(), "corrupt log "+path+" at offset ") {
		t.Fatalf("run on a damaged directory: %v", err)
	}
	addr, stop = start(t, "-addr", "127.0.0.1:0", "-dir", dir, "-partitions", "1", "-salvage")
	if got := roundTrip(t, addr, "*2\r\n$5\r\nESVER\r\n$1\r\ns\r\n", 1); got != ":0\r\n" {
		t.Fatalf("ESVER after salvage: %q", got)
	}
	out := stop()
	if !regexp.MustCompile(`(?m)^damaged log salvaged: \S+partition-00000.log at offset \d+ \(record checksum mismatch\): dropped \d+ bytes, 1 records, 1 events; saved to \S+damaged-\d+`).MatchString(out) {
		t.Fatalf("no salvage report in:\n%s", out)
	}
}
