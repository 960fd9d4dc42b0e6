package testservice

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/esmill/esmill/internal/proc"
)

// EmbeddedProcess starts cmd/sierradb-embedded in directory mode in a
// process of its own (built once per test binary), stopped when t ends,
// and returns its address: the embedded server as a deployment runs it,
// for benchmarks whose figures must not share the test process's heap or
// scheduler with the server.
func EmbeddedProcess(t testing.TB) string {
	t.Helper()
	bin := Build(t, "github.com/esmill/esmill/cmd/sierradb-embedded")
	dir := t.TempDir()
	p, addr, err := startOnFreePort(dir, bin, func(addr string, _ int) []string {
		return []string{"-addr", addr, "-dir", filepath.Join(dir, "data")}
	}, nil, 30*time.Second, func(ctx context.Context, addr string, _ *Process) error {
		return proc.CheckHello(addr, "sierradb")(ctx)
	})
	if err != nil {
		t.Fatalf("start cmd/sierradb-embedded: %v", err)
	}
	t.Cleanup(func() { p.Stop(10 * time.Second) })
	return addr
}
