package embedded_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// crashHelperEnv names the data directory when the test binary runs as the
// crash test's server process.
const crashHelperEnv = "EMBEDDED_CRASH_HELPER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashHelperEnv); dir != "" {
		runCrashHelper(dir)
		return
	}
	os.Exit(m.Run())
}

// runCrashHelper serves dir until the process is killed.
func runCrashHelper(dir string) {
	srv, err := embedded.Start(embedded.Config{Dir: dir, PartitionCount: 8})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("ADDR", srv.Addr())
	select {}
}

// TestCrashKeepsAcknowledgedAppends runs the server in a child process,
// appends from several connections, kills the child with SIGKILL while
// appends are in flight, and checks that a server restarted on the same
// directory has every acknowledged event, with gapless versions and
// sequences.
func TestCrashKeepsAcknowledgedAppends(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		t.Fatalf("child said %q (%v)", line, err)
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, "ADDR "))

	type acked struct {
		id      uuid.UUID
		stream  string
		key     uuid.UUID
		version int64
	}
	var (
		mu    sync.Mutex
		acks  []acked
		wg    sync.WaitGroup
		total int
	)
	const workers = 4
	expect := func(next int64) string {
		if next == 0 {
			return "empty"
		}
		return strconv.FormatInt(next-1, 10)
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			defer c.Close()
			r, wr := resp3.NewReader(c), resp3.NewWriter(c)
			stream, mstream := "crash-"+strconv.Itoa(w), "multi-"+strconv.Itoa(w)
			skey, mkey := sierradb.StreamPartitionKey(stream), uuid.New()
			var sv, mv int64 // next version of each stream
			for i := 0; ; i++ {
				multi := i%3 == 2
				if multi {
					wr.WriteCommand("EMAPPEND", mkey.String(),
						mstream, "x", "EXPECTED_VERSION", expect(mv),
						mstream, "y", "EXPECTED_VERSION", expect(mv+1), "PAYLOAD", "y"+strconv.Itoa(i))
				} else {
					wr.WriteCommand("EAPPEND", stream, "e", "EXPECTED_VERSION", expect(sv), "PAYLOAD", "p"+strconv.Itoa(i))
				}
				if wr.Flush() != nil {
					return
				}
				v, err := r.ReadValue()
				if err != nil {
					return // the server was killed
				}
				if v.Type != resp3.Map {
					t.Errorf("worker %d append %d: %s", w, i, v)
					return
				}
				// No t.Fatal in this goroutine: a bad reply fails the test
				// through t.Errorf and stops the worker.
				eventID := func(m resp3.Value) (uuid.UUID, bool) {
					f, ok := m.MapGet("event_id")
					id, err := uuid.Parse(string(f.Str))
					if !ok || err != nil {
						t.Errorf("worker %d append %d: no event id in %s", w, i, m)
						return uuid.Nil, false
					}
					return id, true
				}
				mu.Lock()
				if multi {
					evs, _ := v.MapGet("events")
					for _, e := range evs.Elems {
						id, ok := eventID(e)
						if !ok {
							mu.Unlock()
							return
						}
						acks = append(acks, acked{id, mstream, mkey, mv})
						mv++
					}
				} else {
					id, ok := eventID(v)
					if !ok {
						mu.Unlock()
						return
					}
					acks = append(acks, acked{id, stream, skey, sv})
					sv++
				}
				total = len(acks)
				mu.Unlock()
			}
		}()
	}
	eventually(t, "acknowledged appends", func() bool { mu.Lock(); defer mu.Unlock(); return total >= 300 })
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	cmd.Wait()
	wg.Wait()

	srv := startDir(t, dir, 8)
	defer srv.Close()
	mu.Lock()
	defer mu.Unlock()
	for _, a := range acks {
		e, ok := srv.Event(a.id)
		if !ok {
			t.Fatalf("acknowledged event %s (%s v%d) lost", a.id, a.stream, a.version)
		}
		if e.StreamID != a.stream || int64(e.StreamVersion) != a.version || e.PartitionKey != a.key {
			t.Fatalf("event %s: %+v, want %s v%d", a.id, e, a.stream, a.version)
		}
	}
	for p := range uint16(8) {
		for i, e := range srv.Partition(p) {
			if e.PartitionSequence != uint64(i) {
				t.Fatalf("partition %d: sequence %d at index %d", p, e.PartitionSequence, i)
			}
		}
	}
	t.Logf("%d acknowledged events survived SIGKILL", len(acks))
}
