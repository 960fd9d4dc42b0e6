package embedded_test

import (
	"bufio"
	"bytes"
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

	"github.com/esmill/esmill/internal/leakcheck"

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
	if mode := os.Getenv(scaleChildEnv); mode != "" {
		runScaleChild(mode)
		return
	}
	os.Exit(leakcheck.Main(m))
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

// startCrashChild starts the test binary as a server on dir and returns it
// with its address.
func startCrashChild(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
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
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q (%v)", line, err)
	}
	return cmd, strings.TrimSpace(strings.TrimPrefix(line, "ADDR "))
}

// acked is an append the server acknowledged.
type acked struct {
	stream  string
	key     uuid.UUID
	version int64
	payload []byte
}

// crashWorker appends to its own streams over one connection until the
// connection fails, and records what was acknowledged. Single events, pairs
// in one EMAPPEND and, now and then, a 256 KiB payload made of record
// images alternate.
type crashWorker struct {
	w     int
	image []byte

	mu     sync.Mutex
	acks   map[uuid.UUID]acked
	doubt  int // appends sent and not answered when the server died
	errors []string
}

func (cw *crashWorker) fail(format string, args ...any) {
	cw.mu.Lock()
	cw.errors = append(cw.errors, fmt.Sprintf(format, args...))
	cw.mu.Unlock()
}

func expectArg(next int64) string {
	if next == 0 {
		return "empty"
	}
	return strconv.FormatInt(next-1, 10)
}

func (cw *crashWorker) run(addr string) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		cw.fail("worker %d: dial: %v", cw.w, err)
		return
	}
	defer c.Close()
	r, wr := resp3.NewReader(c), resp3.NewWriter(c)
	do := func(args ...string) (resp3.Value, bool) {
		wr.WriteCommand(args...)
		if wr.Flush() != nil {
			return resp3.Value{}, false
		}
		v, err := r.ReadValue()
		return v, err == nil
	}
	stream, mstream, bstream := "crash-"+strconv.Itoa(cw.w), "multi-"+strconv.Itoa(cw.w), "big-"+strconv.Itoa(cw.w)
	mkey := uuid.NewSHA1(uuid.NameSpaceOID, []byte(mstream))
	// Appends in doubt at the last crash may have landed: start from what
	// the server holds.
	next := map[string]int64{}
	for _, s := range []string{stream, mstream, bstream} {
		args := []string{"ESVER", s}
		if s == mstream {
			args = append(args, "PARTITION_KEY", mkey.String())
		}
		v, ok := do(args...)
		if !ok {
			return
		}
		next[s] = 0
		if v.Type == resp3.Integer {
			next[s] = v.Int + 1
		}
	}
	for i := 0; ; i++ {
		var args []string
		var payloads [][]byte
		var streams []string
		switch {
		case i%3 == 2:
			p1, p2 := []byte("x"+strconv.Itoa(i)), []byte("y"+strconv.Itoa(i))
			args = []string{"EMAPPEND", mkey.String(),
				mstream, "x", "EXPECTED_VERSION", expectArg(next[mstream]), "PAYLOAD", string(p1),
				mstream, "y", "EXPECTED_VERSION", expectArg(next[mstream] + 1), "PAYLOAD", string(p2)}
			payloads, streams = [][]byte{p1, p2}, []string{mstream, mstream}
		case i%10 == 7:
			p := append([]byte(strconv.Itoa(i)), cw.image...)
			args = []string{"EAPPEND", bstream, "big", "EXPECTED_VERSION", expectArg(next[bstream]), "PAYLOAD", string(p)}
			payloads, streams = [][]byte{p}, []string{bstream}
		default:
			p := []byte("p" + strconv.Itoa(i))
			args = []string{"EAPPEND", stream, "e", "EXPECTED_VERSION", expectArg(next[stream]), "PAYLOAD", string(p)}
			payloads, streams = [][]byte{p}, []string{stream}
		}
		v, ok := do(args...)
		if !ok {
			cw.mu.Lock()
			cw.doubt++
			cw.mu.Unlock()
			return // the server was killed
		}
		var ids []resp3.Value
		if args[0] == "EMAPPEND" {
			evs, _ := v.MapGet("events")
			ids = evs.Elems
		} else {
			ids = []resp3.Value{v}
		}
		if v.Type != resp3.Map || len(ids) != len(streams) {
			cw.fail("worker %d append %d: %s", cw.w, i, v)
			return
		}
		cw.mu.Lock()
		for j, m := range ids {
			f, _ := m.MapGet("event_id")
			id, err := uuid.ParseBytes(f.Str)
			if err != nil {
				cw.mu.Unlock()
				cw.fail("worker %d append %d: no event id in %s", cw.w, i, v)
				return
			}
			key := sierradb.StreamPartitionKey(streams[j])
			if streams[j] == mstream {
				key = mkey
			}
			cw.acks[id] = acked{streams[j], key, next[streams[j]], payloads[j]}
			next[streams[j]]++
		}
		cw.mu.Unlock()
	}
}

func (cw *crashWorker) count() int {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	return len(cw.acks)
}

// TestFaultKillDuringAppends runs the server in a child process on one
// directory, again and again: four connections append concurrently and the
// child is killed with SIGKILL after a random number of further
// acknowledgements. After every kill a server opened on the directory must
// hold every acknowledged event (stream, version, key, payload), once, with
// gapless sequences and versions. EMBEDDED_FAULT_RUNS sets the number of
// kills (.ci/run: 50).
func TestFaultKillDuringAppends(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	runs := faultRuns(t, 8)
	r := faultRand(t)
	dir := t.TempDir()
	image := bytes.Repeat(recordImage(t), (256<<10)/len(recordImage(t))+1)
	workers := make([]*crashWorker, 4)
	for w := range workers {
		workers[w] = &crashWorker{w: w, image: image, acks: map[uuid.UUID]acked{}}
	}
	total := func() int {
		n := 0
		for _, cw := range workers {
			n += cw.count()
		}
		return n
	}
	var torn, landed int
	for cycle := range runs {
		cmd, addr := startCrashChild(t, dir)
		var wg sync.WaitGroup
		for _, cw := range workers {
			wg.Add(1)
			go func() { defer wg.Done(); cw.run(addr) }()
		}
		target := total() + 1 + r.IntN(80)
		deadline := time.Now().Add(30 * time.Second)
		for total() < target && time.Now().Before(deadline) {
			time.Sleep(200 * time.Microsecond)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		wg.Wait()
		for _, cw := range workers {
			if len(cw.errors) > 0 {
				t.Fatalf("cycle %d: %s", cycle, strings.Join(cw.errors, "; "))
			}
		}
		if total() < target {
			t.Fatalf("cycle %d: only %d acknowledgements within 30 s", cycle, total())
		}
		got := verifyAfterCrash(t, dir, workers)
		torn += got.torn
		landed = got.extra
	}
	doubt := 0
	for _, cw := range workers {
		doubt += cw.doubt
	}
	t.Logf("%d SIGKILLs during concurrent appends: %d events acknowledged, 0 lost, 0 duplicated, 0 reordered; "+
		"%d appends in doubt at a kill, %d of their events stored; %d torn tails cut", runs, total(), doubt, landed, torn)
}

type crashCheck struct{ torn, extra int }

// verifyAfterCrash opens dir and checks it against every acknowledgement.
func verifyAfterCrash(t *testing.T, dir string, workers []*crashWorker) crashCheck {
	t.Helper()
	srv := startDir(t, dir, 8)
	defer srv.Close()
	var res crashCheck
	res.torn = len(srv.Recovery())
	ids := map[uuid.UUID]bool{}
	stored := 0
	for p := range uint16(8) {
		for i, e := range srv.Partition(p) {
			if e.PartitionSequence != uint64(i) {
				t.Fatalf("partition %d: sequence %d at index %d", p, e.PartitionSequence, i)
			}
			if ids[e.ID] {
				t.Fatalf("event %s stored twice", e.ID)
			}
			ids[e.ID] = true
			stored++
		}
	}
	acks := 0
	for _, cw := range workers {
		cw.mu.Lock()
		for id, a := range cw.acks {
			e, ok := srv.Event(id)
			if !ok {
				t.Fatalf("acknowledged event %s (%s v%d) lost", id, a.stream, a.version)
			}
			if e.StreamID != a.stream || int64(e.StreamVersion) != a.version || e.PartitionKey != a.key || !bytes.Equal(e.Payload, a.payload) {
				t.Fatalf("event %s: %s v%d, want %s v%d", id, e.StreamID, e.StreamVersion, a.stream, a.version)
			}
			acks++
		}
		cw.mu.Unlock()
		for _, s := range []string{"crash-", "big-"} {
			for i, e := range srv.Stream(s + strconv.Itoa(cw.w)) {
				if e.StreamVersion != uint64(i) {
					t.Fatalf("stream %s: version %d at index %d", e.StreamID, e.StreamVersion, i)
				}
			}
		}
	}
	res.extra = stored - acks
	return res
}
