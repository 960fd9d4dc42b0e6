package embedded_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// faultRuns is how many runs each fault test makes: EMBEDDED_FAULT_RUNS, or
// def. .ci/run sets 50.
func faultRuns(t testing.TB, def int) int {
	if s := os.Getenv("EMBEDDED_FAULT_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("EMBEDDED_FAULT_RUNS=%q: want a positive number", s)
		}
		return n
	}
	return def
}

// faultRand returns a random source seeded from EMBEDDED_FAULT_SEED or the
// clock, and logs the seed so that a failure can be replayed.
func faultRand(t testing.TB) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("EMBEDDED_FAULT_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("EMBEDDED_FAULT_SEED=%q: %v", s, err)
		}
		seed = n
	}
	t.Logf("EMBEDDED_FAULT_SEED=%d", seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// copyDir copies the files of a flat directory.
func copyDir(t testing.TB, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFaultByteFlips flips one random byte of a random record (the last one,
// or one in the middle) of a partition log, many times. Every flip must make
// Start refuse the directory with a CorruptLogError naming the log and the
// damaged record's offset; with Config.Salvage the directory opens with
// exactly the records before the damaged one, and the report names what was
// dropped.
func TestFaultByteFlips(t *testing.T) {
	runs := faultRuns(t, 10)
	r := faultRand(t)
	const n = 12 // transactions in the log
	seed := t.TempDir()
	srv := startDir(t, seed, 4)
	key := sierradb.StreamPartitionKey("s")
	pid := sierradb.PartitionID(key, 4)
	c := dial(t, srv)
	for i := range n {
		// Alternate single events and three-event transactions.
		next := len(srv.Stream("s"))
		args := []any{"EMAPPEND", key.String(), "s", "e", "EXPECTED_VERSION", expectArg(int64(next)),
			"PAYLOAD", strings.Repeat(string(rune('a'+i)), 84), "METADATA", "m"}
		if i%2 == 1 {
			args = append(args, "s", "f", "EXPECTED_VERSION", expectArg(int64(next+1)), "PAYLOAD", "x",
				"s", "g", "EXPECTED_VERSION", expectArg(int64(next+2)))
		}
		if v := c.do(args...); v.Type != resp3.Map {
			t.Fatalf("EMAPPEND: %s", v)
		}
	}
	all := srv.Stream("s")
	srv.Close()
	path := logPath(seed, pid)
	offs := recordOffsets(t, path)
	size := fileSize(t, path)
	if len(offs) != n {
		t.Fatalf("%d records, want %d", len(offs), n)
	}
	events := func(k int) int { return k + k/2*2 } // events in the first k records

	var refused, salvaged int
	for _, where := range []string{"last", "middle"} {
		for range runs {
			k := n - 1
			if where == "middle" {
				k = r.IntN(n - 1)
			}
			end := size
			if k+1 < n {
				end = offs[k+1]
			}
			at := offs[k] + r.Int64N(end-offs[k])
			mask := byte(1 + r.IntN(255))

			dir := t.TempDir()
			copyDir(t, seed, dir)
			b, _ := os.ReadFile(path)
			b[at] ^= mask
			if err := os.WriteFile(logPath(dir, pid), b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := embedded.Start(embedded.Config{Dir: dir, PartitionCount: 4})
			var ce *embedded.CorruptLogError
			if !errors.As(err, &ce) || ce.Path != logPath(dir, pid) || ce.Offset != offs[k] {
				t.Fatalf("%s record %d, byte %d ^ %#x: Start = %v, want a CorruptLogError at offset %d", where, k, at, mask, err, offs[k])
			}
			refused++

			srv, err := embedded.Start(embedded.Config{Dir: dir, PartitionCount: 4, Salvage: true})
			if err != nil {
				t.Fatalf("%s record %d, byte %d: salvage: %v", where, k, at, err)
			}
			got := srv.Stream("s")
			rec := srv.Recovery()
			srv.Close()
			if len(got) != events(k) {
				t.Fatalf("salvage kept %d events, want the %d before record %d", len(got), events(k), k)
			}
			for i := range got {
				if !bytes.Equal(got[i].Payload, all[i].Payload) || got[i].ID != all[i].ID {
					t.Fatalf("salvaged event %d differs", i)
				}
			}
			if len(rec) != 1 || rec[0].Kind != embedded.Salvaged || rec[0].Offset != offs[k] || rec[0].Bytes != size-offs[k] {
				t.Fatalf("Recovery = %+v", rec)
			}
			// The counts are exact unless the flip hit the damaged
			// record's header, which hides the rest.
			inHeader := at < offs[k]+recordHeaderSize
			if !inHeader && (!rec[0].Complete || rec[0].Records != n-k || rec[0].Events != events(n)-events(k)) {
				t.Fatalf("flip in the body of record %d: Recovery = %+v, want %d records and %d events", k, rec[0], n-k, events(n)-events(k))
			}
			if inHeader && (rec[0].Complete || rec[0].Records != 0) {
				t.Fatalf("flip in the header of record %d: Recovery = %+v", k, rec[0])
			}
			saved, err := os.ReadFile(rec[0].SavedTo)
			if err != nil || !bytes.Equal(saved, b[offs[k]:]) {
				t.Fatalf("saved part %s: %v, equal %v", rec[0].SavedTo, err, bytes.Equal(saved, b[offs[k]:]))
			}
			salvaged++
		}
	}
	t.Logf("byte flips: %d runs in last records, %d in middle records: %d refused to open, %d salvaged with a report, 0 opened silently",
		runs, runs, refused, salvaged)
}

// recordImage returns the bytes of the first record of a fresh log: a
// valid record, header and all, in some other file.
func recordImage(t testing.TB) []byte {
	t.Helper()
	dir := t.TempDir()
	srv := startDir(t, dir, 1)
	seedStream(t, srv, "img", 1)
	srv.Close()
	b, err := os.ReadFile(logPath(dir, 0))
	if err != nil {
		t.Fatal(err)
	}
	return b[fileHeaderSize:]
}

// TestFaultRecordImageTornWrite stores payloads made of record images (the
// first with the log's own salt) and cuts the write of a later record short:
// recovery cuts just that record and keeps every acknowledged event.
func TestFaultRecordImageTornWrite(t *testing.T) {
	dir := t.TempDir()
	srv := startDir(t, dir, 1)
	seedStream(t, srv, "s", 3)
	path := logPath(dir, 0)
	own, _ := os.ReadFile(path)
	offs := recordOffsets(t, path)
	// A payload holding a whole copy of this very log (header, salt and
	// records) and one record of another log, then one holding images
	// shifted by every offset up to 8.
	payload := append(append([]byte{}, own...), recordImage(t)...)
	for i := range 8 {
		payload = append(payload, make([]byte, i)...)
		payload = append(payload, own[offs[1]:offs[2]]...)
	}
	for _, p := range [][]byte{payload, payload} {
		_, err := srv.AppendStream("s", "img", p)
		if err != nil {
			t.Fatal(err)
		}
	}
	srv.Close()
	offs = recordOffsets(t, path)
	size := fileSize(t, path)
	for _, cut := range []int64{offs[4] + recordHeaderSize + int64(len(own)) + 3, size - 1, offs[4] + recordHeaderSize + 1} {
		t.Run(strconv.FormatInt(cut, 10), func(t *testing.T) {
			d := t.TempDir()
			copyDir(t, dir, d)
			truncate(t, logPath(d, 0), cut)
			srv := startDir(t, d, 1)
			defer srv.Close()
			got := srv.Stream("s")
			if len(got) != 4 || !bytes.Equal(got[3].Payload, payload) {
				t.Fatalf("%d events after a torn write, want 4 with the image payload intact", len(got))
			}
			rec := srv.Recovery()
			if len(rec) != 1 || rec[0].Kind != embedded.TornTail || rec[0].Offset != offs[4] || rec[0].Records != 1 {
				t.Fatalf("Recovery = %+v", rec)
			}
		})
	}
}

// TestFaultSalvageFileHeader: a damaged file header hides every record.
// Salvage keeps none of them, saves the whole file and says so.
func TestFaultSalvageFileHeader(t *testing.T) {
	dir := t.TempDir()
	srv := startDir(t, dir, 1)
	seedStream(t, srv, "s", 3)
	srv.Close()
	path := logPath(dir, 0)
	b, _ := os.ReadFile(path)
	flipByte(t, path, 3)
	srv, err := embedded.Start(embedded.Config{Dir: dir, PartitionCount: 1, Salvage: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if n := len(srv.Stream("s")); n != 0 {
		t.Fatalf("%d events kept from a log with a damaged header", n)
	}
	rec := srv.Recovery()
	if len(rec) != 1 || rec[0].Offset != 0 || rec[0].Bytes != int64(len(b)) || rec[0].Complete {
		t.Fatalf("Recovery = %+v", rec)
	}
	if saved, _ := os.ReadFile(rec[0].SavedTo); len(saved) != len(b) {
		t.Fatalf("saved %d bytes, want %d", len(saved), len(b))
	}
	// The log starts afresh.
	if _, err := srv.AppendStream("s", "e", nil); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Partition(0)); n != 1 {
		t.Fatalf("partition has %d events", n)
	}
}
