package embedded_test

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// streamIn returns a stream id (under its default key) whose partition is
// p of count.
func streamIn(prefix string, p, count uint16) string {
	for i := 0; ; i++ {
		s := fmt.Sprintf("%s-%d", prefix, i)
		if sierradb.PartitionID(sierradb.StreamPartitionKey(s), count) == p {
			return s
		}
	}
}

// An fsync that fails makes its partition refuse every further append
// with DBOPFAILED until the server restarts, even once the disk is fine
// again, because the state of the file after a failed fsync is unknown;
// the other partitions go on. After a restart the partition takes appends
// again, and holds exactly the acknowledged events. The failure comes
// from the server's fsync seam (export_test.go), per server.
func TestFsyncFailureRefusesAppendsUntilRestart(t *testing.T) {
	const count = 8
	dir := t.TempDir()
	srv := embedded.RunT(t, embedded.Config{Dir: dir, PartitionCount: count})
	c := dial(t, srv)
	a, a2, b := streamIn("a", 3, count), streamIn("a2x", 3, count), streamIn("b", 5, count)
	appendOK := func(c *client, stream, exp string) {
		t.Helper()
		if v := c.do("EAPPEND", stream, "e", "EXPECTED_VERSION", exp); v.Type != resp3.Map {
			t.Fatalf("EAPPEND %s: %s", stream, v)
		}
	}
	appendOK(c, a, "empty")
	appendOK(c, b, "empty")

	var faults sync.Map // partition -> calls
	embedded.SetSyncFault(srv, func(p uint16) error {
		if p != 3 {
			return nil
		}
		n, _ := faults.LoadOrStore(p, new(int))
		*n.(*int)++
		return errors.New("injected EIO")
	})
	wantErrorPrefix(t, c.do("EAPPEND", a, "e", "EXPECTED_VERSION", "0"), "DBOPFAILED database operation failed: sync ")
	// The disk is fine again; the partition still refuses, without
	// touching the file (the fault is not even consulted).
	embedded.SetSyncFault(srv, nil)
	wantErrorPrefix(t, c.do("EAPPEND", a, "e", "EXPECTED_VERSION", "0"), "DBOPFAILED ")
	wantErrorPrefix(t, c.do("EAPPEND", a2, "e", "EXPECTED_VERSION", "empty"), "DBOPFAILED ")
	if n, _ := faults.Load(uint16(3)); *n.(*int) != 1 {
		t.Fatalf("the fault ran %d times, want once", *n.(*int))
	}
	// Other partitions go on.
	appendOK(c, b, "0")

	// After a restart the partition takes appends again; the failed
	// append left nothing behind.
	srv.Close()
	srv2 := embedded.RunT(t, embedded.Config{Dir: dir, PartitionCount: count})
	c2 := dial(t, srv2)
	if v := c2.do("ESVER", a); v.Type != resp3.Integer || v.Int != 0 {
		t.Fatalf("ESVER %s after restart: %s, want 0 (one acknowledged event)", a, v)
	}
	if v := c2.do("ESVER", b); v.Type != resp3.Integer || v.Int != 1 {
		t.Fatalf("ESVER %s after restart: %s, want 1", b, v)
	}
	appendOK(c2, a, "0")
	appendOK(c2, a2, "empty")
}

// rawDo sends one command on nc and reads its reply, touching no test:
// for goroutines other than the test's own.
func rawDo(nc net.Conn, r *resp3.Reader, w *resp3.Writer, args ...string) (resp3.Value, error) {
	w.WriteCommand(args...)
	if err := w.Flush(); err != nil {
		return resp3.Value{}, err
	}
	nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	return r.ReadValue()
}

// Appends to different partitions run in parallel: while an append to one
// partition is held inside its fsync (by the fsync seam, until the test
// releases it), an append to another partition completes. No timing
// decides anything: the held append cannot finish before the release.
func TestAppendsToPartitionsRunInParallel(t *testing.T) {
	const count = 8
	srv := embedded.RunT(t, embedded.Config{Dir: t.TempDir(), PartitionCount: count})
	a, b := streamIn("pa", 2, count), streamIn("pb", 6, count)
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	embedded.SetSyncFault(srv, func(p uint16) error {
		if p == 2 {
			once.Do(func() { close(entered) })
			<-release
		}
		return nil
	})
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	defer releaseAll()

	nc, err := net.DialTimeout("tcp", srv.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	type result struct {
		v   resp3.Value
		err error
	}
	held := make(chan result, 1)
	go func() {
		v, err := rawDo(nc, resp3.NewReader(nc), resp3.NewWriter(nc), "EAPPEND", a, "e", "EXPECTED_VERSION", "empty")
		held <- result{v, err}
	}()
	defer func() { releaseAll(); <-held }() // joined however the test ends
	select {
	case <-entered:
	case r := <-held:
		t.Fatalf("the append to partition 2 finished without reaching its fsync: %s %v", r.v, r.err)
	case <-time.After(30 * time.Second):
		t.Fatal("the append to partition 2 never reached its fsync")
	}
	// Partition 2 is held inside its fsync, with its lock; partition 6
	// is not behind it.
	c := dial(t, srv)
	if v := c.do("EAPPEND", b, "e", "EXPECTED_VERSION", "empty"); v.Type != resp3.Map {
		t.Fatalf("EAPPEND to partition 6 while partition 2 is held: %s", v)
	}
	select {
	case r := <-held:
		t.Fatalf("the held append finished before its release: %s %v", r.v, r.err)
	default:
	}
	releaseAll()
	r := <-held
	held <- r // for the deferred join
	if r.err != nil || r.v.Type != resp3.Map {
		t.Fatalf("the held append, released: %s %v", r.v, r.err)
	}
}
