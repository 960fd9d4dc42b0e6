package file_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/esmill/esmill/codec"
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

// A second store over the same directory cannot take a projection the
// first one holds.
func TestLockedByAnotherStore(t *testing.T) {
	dir := t.TempDir()
	a, b := open(t, dir, codec.JSON), open(t, dir, codec.JSON)
	ctx := context.Background()
	if _, err := a.Checkpoints(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Begin(ctx, "p"); !errors.Is(err, readmodel.ErrCheckpointConflict) {
		t.Fatalf("Begin on a locked projection = %v, want ErrCheckpointConflict", err)
	}
	if _, err := b.Checkpoints(ctx, "q"); err != nil {
		t.Fatalf("another projection: %v", err)
	}
	a.Close()
	if _, err := b.Begin(ctx, "p"); err != nil {
		t.Fatalf("Begin after the holder closed: %v", err)
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
	if strings.Join(names, ",") != "p.json,p.lock" {
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
