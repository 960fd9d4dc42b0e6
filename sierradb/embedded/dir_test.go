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

// The log format, as documented in format.go: a 32-byte file header, then
// records of a 28-byte header (body length at offset 4) and a body.
const (
	fileHeaderSize   = 32
	recordHeaderSize = 28
)

// recordOffsets returns the offset of every record of a partition log and
// the offset where the last one ends.
func recordOffsets(t testing.TB, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for off := fileHeaderSize; off+recordHeaderSize <= len(b); {
		offs = append(offs, int64(off))
		off += recordHeaderSize + int(binary.BigEndian.Uint32(b[off+4:]))
	}
	return offs
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
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

// TestDirTornTail: what a crash during the last write leaves (an incomplete
// header, a record shorter than its header says, zeros) is cut off.
func TestDirTornTail(t *testing.T) {
	pid := sierradb.PartitionID(sierradb.StreamPartitionKey("s"), 4)
	tests := []struct {
		name   string
		damage func(t *testing.T, path string, offs []int64)
		keep   int // events of stream s that survive
	}{
		{"truncated mid-record", func(t *testing.T, path string, offs []int64) {
			truncate(t, path, offs[4]+recordHeaderSize+20)
		}, 4},
		{"truncated right after a record header", func(t *testing.T, path string, offs []int64) {
			truncate(t, path, offs[4]+recordHeaderSize)
		}, 4},
		{"truncated inside a record header", func(t *testing.T, path string, offs []int64) {
			truncate(t, path, offs[4]+3)
		}, 4},
		{"zeros after the last record", func(t *testing.T, path string, offs []int64) {
			appendBytes(t, path, make([]byte, 4096))
		}, 5},
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
			offs := recordOffsets(t, path)
			size := fileSize(t, path)
			tt.damage(t, path, offs)
			damaged := fileSize(t, path)

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
			rec := srv.Recovery()
			if damaged == size {
				if len(rec) != 0 {
					t.Fatalf("Recovery = %v for an intact log", rec)
				}
			} else if len(rec) != 1 || rec[0].Kind != embedded.TornTail || rec[0].Path != path || !rec[0].Complete ||
				rec[0].Bytes != damaged-max(rec[0].Offset, 0) || rec[0].SavedTo != "" {
				t.Fatalf("Recovery = %+v", rec)
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
			if rec := srv.Recovery(); len(rec) != 0 {
				t.Fatalf("second restart: Recovery = %v", rec)
			}
		})
	}
}

// TestDirCorruption: damage that a crash cannot leave refuses to open, with
// the file and the offset of the damage.
func TestDirCorruption(t *testing.T) {
	pid := sierradb.PartitionID(sierradb.StreamPartitionKey("s"), 4)
	tests := []struct {
		name   string
		damage func(t *testing.T, path string, offs []int64) int64 // returns the offset to report
	}{
		{"checksum mismatch on an early record", func(t *testing.T, path string, offs []int64) int64 {
			flipByte(t, path, offs[1]+60)
			return offs[1]
		}},
		{"checksum mismatch on the last record", func(t *testing.T, path string, offs []int64) int64 {
			flipByte(t, path, offs[4]+recordHeaderSize+5)
			return offs[4]
		}},
		{"corrupt length field", func(t *testing.T, path string, offs []int64) int64 {
			flipByte(t, path, offs[2]+5)
			return offs[2]
		}},
		{"corrupt length field of the last record", func(t *testing.T, path string, offs []int64) int64 {
			flipByte(t, path, offs[4]+7)
			return offs[4]
		}},
		{"zeroed record in the middle", func(t *testing.T, path string, offs []int64) int64 {
			zero(t, path, offs[2], offs[3])
			return offs[2]
		}},
		{"garbage after the last record", func(t *testing.T, path string, offs []int64) int64 {
			end := fileSize(t, path)
			appendBytes(t, path, []byte("\xff\xff\xff\xffxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"))
			return end
		}},
		{"cut record header followed by garbage", func(t *testing.T, path string, offs []int64) int64 {
			truncate(t, path, offs[4]+20)
			appendBytes(t, path, []byte("\x13garbage garbage garbage garbage garbage garbage garbage"))
			return offs[4]
		}},
		{"bad magic", func(t *testing.T, path string, offs []int64) int64 {
			flipByte(t, path, 0)
			return 0
		}},
		{"bad salt", func(t *testing.T, path string, offs []int64) int64 {
			flipByte(t, path, 20)
			return 0
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			srv := startDir(t, dir, 4)
			seedStream(t, srv, "s", 5)
			srv.Close()
			path := logPath(dir, pid)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			off := tt.damage(t, path, recordOffsets(t, path))
			damaged, _ := os.ReadFile(path)
			_, err = embedded.Start(embedded.Config{Dir: dir, PartitionCount: 4})
			var ce *embedded.CorruptLogError
			if !errors.Is(err, embedded.ErrCorruptLog) || !errors.As(err, &ce) || ce.Path != path || ce.Offset != off {
				t.Fatalf("Start = %v, want a CorruptLogError for %s at offset %d", err, path, off)
			}
			// Nothing was changed on disk.
			if after, _ := os.ReadFile(path); !reflect.DeepEqual(after, damaged) || len(before) == 0 {
				t.Fatal("a refused log was modified")
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
