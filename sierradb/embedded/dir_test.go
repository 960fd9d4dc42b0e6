package embedded_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

// logPath is the log file of a partition, as documented in the README.
func logPath(dir string, pid uint16) string {
	return filepath.Join(dir, fmt.Sprintf("partition-%05d.log", pid))
}

// recordOffsets returns the offset of every record of a partition log.
func recordOffsets(t testing.TB, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for off := 16; off+8 <= len(b); {
		offs = append(offs, int64(off))
		off += 8 + int(binary.BigEndian.Uint32(b[off:]))
	}
	return offs
}

func startDir(t testing.TB, dir string, count uint16) *embedded.Server {
	t.Helper()
	srv, err := embedded.Start(embedded.Config{Dir: dir, PartitionCount: count})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return srv
}

// seedStream appends n single-event transactions to stream s through the
// direct API with exact expected versions.
func seedStream(t testing.TB, srv *embedded.Server, s string, n int) {
	t.Helper()
	key := sierradb.StreamPartitionKey(s)
	cur := int64(len(srv.Stream(s))) - 1
	for i := range n {
		_, err := srv.AppendMulti(key, sierradb.NewEvent{
			StreamID: s, Name: "e" + strconv.Itoa(i), ExpectedVersion: sierradb.ExpectAfter(cur),
			Payload: []byte("payload-" + strconv.Itoa(i)), Metadata: []byte("m"),
		})
		if err != nil {
			t.Fatal(err)
		}
		cur++
	}
}

func TestDirSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	srv := startDir(t, dir, 8)
	c := dial(t, srv)
	appendN(t, c, "s", 0, 5)
	key := uuid.New()
	c.do("EMAPPEND", key.String(), "a", "A", "EXPECTED_VERSION", "empty", "b", "B", "EXPECTED_VERSION", "empty", "PAYLOAD", "bb")
	if embedded.SyncCount(srv) != 6 {
		t.Fatalf("SyncCount = %d, want 6 (one per transaction)", embedded.SyncCount(srv))
	}
	var before [][]sierradb.Event
	for p := range uint16(8) {
		before = append(before, srv.Partition(p))
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	srv = startDir(t, dir, 8)
	defer srv.Close()
	for p := range uint16(8) {
		if got := srv.Partition(p); !reflect.DeepEqual(got, before[p]) {
			t.Fatalf("partition %d after restart:\n%v\nwant\n%v", p, got, before[p])
		}
	}
	c = dial(t, srv)
	wantInt(t, c.do("ESVER", "s"), 4)
	wantInt(t, c.do("ESVER", "b", "PARTITION_KEY", key.String()), 0)
	// Sequences and versions go on; the key binding was rebuilt.
	v := c.do("EAPPEND", "s", "e", "EXPECTED_VERSION", "4")
	if getInt(t, v, "stream_version") != 5 {
		t.Fatalf("append after restart: %s", v)
	}
	wantErrorPrefix(t, c.do("EAPPEND", "a", "x", "EXPECTED_VERSION", "empty"),
		"DBOPFAILED database operation failed: partition key must be the same for all events in a stream: expected "+key.String())
}

func TestDirPartitionCountMismatch(t *testing.T) {
	dir := t.TempDir()
	srv := startDir(t, dir, 8)
	srv.Close()
	_, err := embedded.Start(embedded.Config{Dir: dir, PartitionCount: 16})
	if !errors.Is(err, embedded.ErrIncompatibleDir) {
		t.Fatalf("Start with another count: %v", err)
	}
	// A log file beyond the partition count is refused too.
	if err := os.WriteFile(logPath(dir, 9), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := embedded.Start(embedded.Config{Dir: dir, PartitionCount: 8}); !errors.Is(err, embedded.ErrIncompatibleDir) {
		t.Fatalf("Start with a stray log: %v", err)
	}
}

func TestDirLocked(t *testing.T) {
	dir := t.TempDir()
	srv := startDir(t, dir, 4)
	defer srv.Close()
	if _, err := embedded.Start(embedded.Config{Dir: dir, PartitionCount: 4}); !errors.Is(err, embedded.ErrDirLocked) {
		t.Fatalf("second Start on one directory: %v", err)
	}
}

func TestDirTornTail(t *testing.T) {
	pid := sierradb.PartitionID(sierradb.StreamPartitionKey("s"), 4)
	tests := []struct {
		name   string
		damage func(t *testing.T, path string, offs []int64)
		keep   int // events of stream s that survive
	}{
		{"truncated mid-record", func(t *testing.T, path string, offs []int64) {
			truncate(t, path, offs[4]+20)
		}, 4},
		{"truncated mid-record with garbage after", func(t *testing.T, path string, offs []int64) {
			truncate(t, path, offs[4]+20)
			appendBytes(t, path, []byte("\x13garbage garbage garbage garbage garbage garbage garbage garbage garbage"))
		}, 4},
		{"truncated inside a record header", func(t *testing.T, path string, offs []int64) {
			truncate(t, path, offs[4]+3)
		}, 4},
		{"zeros after the last record", func(t *testing.T, path string, offs []int64) {
			appendBytes(t, path, make([]byte, 4096))
		}, 5},
		{"garbage after the last record", func(t *testing.T, path string, offs []int64) {
			appendBytes(t, path, []byte("\xff\xff\xff\xffxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"))
		}, 5},
		{"last record checksum mismatch", func(t *testing.T, path string, offs []int64) {
			flipByte(t, path, offs[4]+40)
		}, 4},
		{"truncated inside the file header", func(t *testing.T, path string, offs []int64) {
			truncate(t, path, 10)
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			srv := startDir(t, dir, 4)
			seedStream(t, srv, "s", 5)
			srv.Close()
			path := logPath(dir, pid)
			tt.damage(t, path, recordOffsets(t, path))

			srv = startDir(t, dir, 4)
			got := srv.Stream("s")
			if len(got) != tt.keep {
				t.Fatalf("%d events after recovery, want %d", len(got), tt.keep)
			}
			for i, e := range got {
				if string(e.Payload) != "payload-"+strconv.Itoa(i) || e.StreamVersion != uint64(i) {
					t.Fatalf("event %d: %+v", i, e)
				}
			}
			// The tail was cut away: new appends land after the kept
			// events and survive another restart.
			seedStream(t, srv, "s", 2)
			srv.Close()
			srv = startDir(t, dir, 4)
			defer srv.Close()
			if n := len(srv.Stream("s")); n != tt.keep+2 {
				t.Fatalf("%d events after the second restart, want %d", n, tt.keep+2)
			}
			if n := len(srv.Partition(pid)); n != tt.keep+2 {
				t.Fatalf("partition has %d events, want %d", n, tt.keep+2)
			}
		})
	}
}

func TestDirCorruptionInTheMiddle(t *testing.T) {
	pid := sierradb.PartitionID(sierradb.StreamPartitionKey("s"), 4)
	tests := []struct {
		name   string
		damage func(t *testing.T, path string, offs []int64)
	}{
		{"checksum mismatch on an early record", func(t *testing.T, path string, offs []int64) {
			flipByte(t, path, offs[1]+60)
		}},
		{"corrupt length field", func(t *testing.T, path string, offs []int64) {
			flipByte(t, path, offs[2])
		}},
		{"zeroed record in the middle", func(t *testing.T, path string, offs []int64) {
			zero(t, path, offs[2], offs[3])
		}},
		{"bad magic", func(t *testing.T, path string, offs []int64) {
			flipByte(t, path, 0)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			srv := startDir(t, dir, 4)
			seedStream(t, srv, "s", 5)
			srv.Close()
			path := logPath(dir, pid)
			tt.damage(t, path, recordOffsets(t, path))
			_, err := embedded.Start(embedded.Config{Dir: dir, PartitionCount: 4})
			var ce *embedded.CorruptLogError
			if !errors.Is(err, embedded.ErrCorruptLog) || !errors.As(err, &ce) || ce.Path != path {
				t.Fatalf("Start = %v, want a CorruptLogError for %s", err, path)
			}
		})
	}
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x5a
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func zero(t *testing.T, path string, from, to int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	clear(b[from:to])
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
