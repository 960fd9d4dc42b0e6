package file_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/lease"
	"github.com/esmill/esmill/lease/leasetest"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/checkpointtest"
	"github.com/esmill/esmill/readmodel/file"
)

type model = map[string]int64

type handle = *file.Tx[model]

func open(t testing.TB, dir string, f codec.Format) *file.Store[model] {
	t.Helper()
	s, err := file.Open(file.Config[model]{Dir: dir, Format: f, New: func() model { return model{} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func harness(f codec.Format) checkpointtest.Harness[handle] {
	dirs := map[readmodel.Store[handle]]string{}
	return checkpointtest.Harness[handle]{
		New: func(t testing.TB) readmodel.Store[handle] {
			dir := t.TempDir()
			s := open(t, dir, f)
			dirs[s] = dir
			return s
		},
		Reopen: func(t testing.TB, old readmodel.Store[handle]) readmodel.Store[handle] {
			old.(*file.Store[model]).Close()
			s := open(t, dirs[old], f)
			dirs[s] = dirs[old]
			return s
		},
		Add: func(ctx context.Context, tx handle, projection, key string, delta int64) error {
			(*tx.Model())[key] += delta
			return nil
		},
		Get: func(ctx context.Context, st readmodel.Store[handle], projection, key string) (v int64, ok bool, err error) {
			err = st.(*file.Store[model]).Read(projection, func(m model) { v, ok = m[key] })
			return v, ok, err
		},
	}
}

func TestContractJSON(t *testing.T) { checkpointtest.Run(t, harness(codec.JSON)) }

func TestContractCBOR(t *testing.T) { checkpointtest.Run(t, harness(codec.CBOR)) }

// Two stores over one directory (as two processes would be) share a
// projection: a transaction of one waits for the other's, each sees the
// other's commits, and a stale compare-and-set fails.
func TestSharedDirectory(t *testing.T) {
	dir := t.TempDir()
	a, b := open(t, dir, codec.JSON), open(t, dir, codec.JSON)
	ctx := context.Background()
	txA, err := a.Begin(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	(*txA.Handle(readmodel.Position{}).Model())["k"] = 1
	// b waits while a's transaction holds the projection.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := b.Begin(short, "p"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Begin while another store's transaction is open = %v, want a wait until the deadline", err)
	}
	if _, err := b.Checkpoints(ctx, "q"); err != nil {
		t.Fatalf("another projection: %v", err)
	}
	if err := txA.Commit(ctx, []readmodel.Advance{{Partition: 0, Prev: -1, Next: 0}}); err != nil {
		t.Fatal(err)
	}
	cps, err := b.Checkpoints(ctx, "p")
	if err != nil || cps[0] != 0 || len(cps) != 1 {
		t.Fatalf("b sees checkpoints %v, %v; want a's commit", cps, err)
	}
	txB, err := b.Begin(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if got := (*txB.Handle(readmodel.Position{}).Model())["k"]; got != 1 {
		t.Fatalf("b's transaction starts from k = %d, want a's 1", got)
	}
	(*txB.Handle(readmodel.Position{}).Model())["k"] = 2
	if err := txB.Commit(ctx, []readmodel.Advance{{Partition: 0, Prev: -1, Next: 1}}); !errors.Is(err, readmodel.ErrCheckpointConflict) {
		t.Fatalf("stale compare-and-set = %v, want ErrCheckpointConflict", err)
	}
	txB, err = b.Begin(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	(*txB.Handle(readmodel.Position{}).Model())["k"] = 2
	if err := txB.Commit(ctx, []readmodel.Advance{{Partition: 0, Prev: 0, Next: 1}}); err != nil {
		t.Fatal(err)
	}
	var k int64
	if err := a.Read("p", func(m model) { k = m["k"] }); err != nil || k != 2 {
		t.Fatalf("a reads k = %d, %v; want b's 2", k, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := a.Checkpoints(ctx, "p"); !errors.Is(err, file.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// A commit leaves one complete file and no temporary file, and stale
// temporary files of a crashed writer are removed on open.
func TestAtomicReplace(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, ".p.json.tmp-123")
	if err := os.WriteFile(stale, []byte("{torn"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir, codec.JSON)
	ctx := context.Background()
	tx, err := s.Begin(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	(*tx.Handle(readmodel.Position{}).Model())["k"] = 1
	if err := tx.Commit(ctx, []readmodel.Advance{{Partition: 0, Prev: -1, Next: 0}}); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "p.commit,p.json,p.lock" {
		t.Fatalf("directory holds %v", names)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "p.json"))
	if !strings.Contains(string(b), `"checkpoints"`) || !strings.Contains(string(b), `"k": 1`) {
		t.Fatalf("file = %s", b)
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := file.Open(file.Config[model]{}); err == nil {
		t.Fatal("Open without Dir succeeded")
	}
	if _, err := file.Open(file.Config[model]{Dir: t.TempDir(), Format: 9}); err == nil {
		t.Fatal("Open with an unknown format succeeded")
	}
}

// TestLeaseContract runs the lease contract against the store's leases.
func TestLeaseContract(t *testing.T) {
	s := open(t, t.TempDir(), codec.JSON).Leases()
	leasetest.Run(t, func(*testing.T) lease.Store { return s }, 300*time.Millisecond)
}
