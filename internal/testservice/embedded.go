package testservice

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/esmill/esmill/internal/proc"
)

// embeddedBin is cmd/sierradb-embedded, built once per test binary.
var embeddedBin struct {
	once sync.Once
	path string
	err  error
}

// EmbeddedProcess starts cmd/sierradb-embedded in directory mode in a
// process of its own (built once per test binary), stopped when t ends,
// and returns its address: the embedded server as a deployment runs it,
// for benchmarks whose figures must not share the test process's heap or
// scheduler with the server.
func EmbeddedProcess(t testing.TB) string {
	t.Helper()
	embeddedBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "esmill-embedded-bin")
		if err != nil {
			embeddedBin.err = err
			return
		}
		embeddedBin.path = filepath.Join(dir, "sierradb-embedded")
		out, err := exec.Command("go", "build", "-o", embeddedBin.path, "github.com/esmill/esmill/cmd/sierradb-embedded").CombinedOutput()
		if err != nil {
			embeddedBin.err = fmt.Errorf("go build cmd/sierradb-embedded: %v\n%s", err, out)
		}
	})
	if embeddedBin.err != nil {
		t.Fatal(embeddedBin.err)
	}
	dir := t.TempDir()
	p, addr, err := startOnFreePort(dir, embeddedBin.path, func(addr string, _ int) []string {
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
