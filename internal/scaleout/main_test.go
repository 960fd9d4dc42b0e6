package scaleout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/esmill/esmill/internal/proc"
	"github.com/esmill/esmill/internal/scaleout"
	"github.com/esmill/esmill/internal/testservice"
)

// workerEnv makes the test binary a worker process: its value is the
// worker's configuration in JSON.
const workerEnv = "ESMILL_SCALEOUT_WORKER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(workerEnv); spec != "" {
		os.Exit(workerMain(spec))
	}
	os.Exit(testservice.Main(m))
}

func workerMain(spec string) int {
	var cfg scaleout.WorkerConfig
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.Ready = func() { fmt.Println("worker ready") }
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var spans *tracetest.InMemoryExporter
	if cfg.SpanFile != "" {
		spans = tracetest.NewInMemoryExporter()
		cfg.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	}
	if err := scaleout.RunWorker(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	if spans != nil {
		if err := writeSpans(cfg.SpanFile, spans.GetSpans()); err != nil {
			fmt.Fprintln(os.Stderr, "worker: spans:", err)
			return 1
		}
	}
	fmt.Println("worker stopped")
	return 0
}

// startWorker starts a worker process in a directory of its own.
func startWorker(t testing.TB, cfg scaleout.WorkerConfig) *proc.Process {
	t.Helper()
	spec, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := proc.Start(t.TempDir(), os.Args[0], []string{"-test.run=^$"}, []string{workerEnv + "=" + string(spec)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill() })
	return p
}

func waitReady(t testing.TB, p *proc.Process) {
	t.Helper()
	if err := p.WaitReady(context.Background(), 60*time.Second, p.LogContains("worker ready")); err != nil {
		t.Fatal(err)
	}
}

// embeddedServer starts the embedded SierraDB as a process of its own
// (cmd/sierradb-embedded, directory mode), so that every worker process
// shares it, and returns its address.
func embeddedServer(t testing.TB) string {
	t.Helper()
	bin := testservice.Build(t, "github.com/esmill/esmill/cmd/sierradb-embedded")
	port, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p, err := proc.Start(dir, bin, []string{"-addr", addr, "-dir", filepath.Join(dir, "data")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(10 * time.Second) })
	if err := p.WaitReady(context.Background(), 30*time.Second, proc.CheckHello(addr, "sierradb")); err != nil {
		t.Fatal(err)
	}
	return addr
}
