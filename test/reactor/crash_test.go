package reactor_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/sierradb/sierradbtest"
	"github.com/esmill/esmill/test/internal/crashreact"
)

// reactorBin builds the reactor program once per test binary.
func reactorBin(t *testing.T) string {
	t.Helper()
	return testservice.Build(t, "github.com/esmill/esmill/test/reactor/reactorproc")
}

const (
	nOrders  = 100 // source streams
	nTargets = 40  // credited accounts
	nLogs    = 8   // logs
)

func targets() []string {
	var out []string
	for i := range nTargets {
		out = append(out, fmt.Sprintf("t%d", i))
	}
	for i := range nLogs {
		out = append(out, fmt.Sprintf("log%d", i))
	}
	return out
}

// orders appends the source events.
type orders struct {
	client   *sierradb.Client
	versions map[string]int64
	n        int
	mu       sync.Mutex
	ids      []string // the appended events' ids
}

func (o *orders) append(ctx context.Context, n int) error {
	byStream := make(map[string][]sierradb.NewEvent)
	var order []string
	for range n {
		i := o.n
		o.n++
		stream := crashreact.Orders.StreamID(fmt.Sprintf("o%d", (i*7)%nOrders))
		name, payload, err := crashreact.Orders.EncodeEvent(crashreact.Ordered{
			Target: fmt.Sprintf("t%d", i%nTargets), Log: fmt.Sprintf("log%d", i%nLogs), Amount: int64(i%50 + 1)})
		if err != nil {
			return err
		}
		if _, ok := byStream[stream]; !ok {
			order = append(order, stream)
		}
		byStream[stream] = append(byStream[stream], sierradb.NewEvent{StreamID: stream, Name: name, Payload: payload})
	}
	for _, stream := range order {
		evs := byStream[stream]
		v, ok := o.versions[stream]
		if !ok {
			v = -1
		}
		v, err := sierradbtest.AppendChunks(ctx, o.client, stream, v, evs, 100, func(res sierradb.MultiAppendResult) {
			o.mu.Lock()
			defer o.mu.Unlock()
			for _, e := range res.Events {
				o.ids = append(o.ids, e.EventID.String())
			}
		})
		if err != nil {
			return err
		}
		o.versions[stream] = v
	}
	return nil
}

// TestReactorCrash runs three instances of one reactor as separate
// processes sharing its partitions under leases in the reactor's store
// (Config.Leases, TTL 1s) while order events arrive, SIGKILLs one at random
// again and again and starts it again: the partitions of a killed instance
// go to the others within the TTL, and come back as it rejoins. At the end
// every order event must have caused exactly one credit and one log entry,
// and have been counted once in the reactor's store: 0 commands lost or
// executed twice. One run per durable store.
func TestReactorCrash(t *testing.T) {
	for _, kind := range []string{"file", "sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			reactorCrash(t, kind)
		})
	}
}

func reactorCrash(t *testing.T, kind string) {
	bin := reactorBin(t)
	history, live, kills := 4000, 1000, 15
	if testing.Short() {
		history, live, kills = 400, 200, 5
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	srv := embedded.RunT(t)
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	o := crashreact.Options{Kind: kind, SierraAddr: srv.Addr(), Name: "react", LeaseTTL: time.Second}
	switch kind {
	case "file":
		o.Target = t.TempDir()
	case "sqlite":
		o.Target = filepath.Join(t.TempDir(), "react.db")
	case "postgres":
		o.Target = testservice.PostgresSchema(ctx, t, "react_")
	}
	args := func(instance string) []string {
		return []string{"-store", o.Kind, "-target", o.Target, "-sierra", o.SierraAddr, "-name", o.Name, "-instance", instance,
			"-ttl", o.LeaseTTL.String()}
	}

	src := &orders{client: client, versions: make(map[string]int64)}
	if err := src.append(ctx, history); err != nil {
		t.Fatal(err)
	}
	writerDone := make(chan error, 1)
	go func() {
		for sent := 0; sent < live; sent += 20 {
			if err := src.append(ctx, min(20, live-sent)); err != nil {
				writerDone <- err
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		writerDone <- nil
	}()

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d", seed)
	dirs := make([]string, 3)
	procs := make([]*testservice.Process, 3)
	start := func(i int) {
		p, err := testservice.StartProcess(dirs[i], bin, args(fmt.Sprint(i)), nil)
		if err != nil {
			t.Fatal(err)
		}
		procs[i] = p
	}
	for i := range procs {
		dirs[i] = t.TempDir()
		start(i)
	}
	began := time.Now()
	// Kill at random until the writer is done, at least kills times, and
	// the targets hold every command (the instances have done the work;
	// the last run then has little left but to catch up its
	// checkpoints), within a bound.
	writing := true
	done := 0
	killed := 0
	deadline := time.Now().Add(3 * time.Minute)
	for writing || killed < kills || done < 2*(history+live) {
		if time.Now().After(deadline) {
			t.Logf("chaos stopped at its deadline: %d of %d commands done", done, 2*(history+live))
			break
		}
		time.Sleep(100*time.Millisecond + time.Duration(rng.Int64N(int64(700*time.Millisecond))))
		select {
		case err := <-writerDone:
			if err != nil {
				t.Fatal(err)
			}
			writing = false
		default:
		}
		for j, p := range procs {
			select {
			case <-p.Exited():
				t.Fatalf("instance %d exited by itself:\n%s", j, p.LogTail(4000))
			default:
			}
		}
		i := rng.IntN(3)
		procs[i].Kill()
		killed++
		start(i)
		if done, err = commandsDone(ctx, client); err != nil {
			t.Fatal(err)
		}
		if killed%10 == 0 {
			t.Logf("%d kills, %d commands done, after %s", killed, done, time.Since(began).Round(time.Millisecond))
		}
	}
	for _, p := range procs {
		p.Kill()
	}
	restarts := 0
	for _, d := range dirs {
		b, _ := os.ReadFile(filepath.Join(d, "reactorproc.log"))
		restarts += strings.Count(string(b), "stopped by another instance")
	}

	final, err := testservice.StartProcess(t.TempDir(), bin, append(args("final"), "-until-synced"), nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-final.Exited():
	case <-ctx.Done():
		final.Kill()
		t.Fatalf("the last run did not catch up:\n%s", final.LogTail(4000))
	}
	finalLog := final.LogTail(4000)
	if !strings.Contains(finalLog, "synced") {
		t.Fatalf("the last run failed:\n%s", finalLog)
	}

	got, err := crashreact.Read(ctx, o, client, targets())
	if err != nil {
		t.Fatal(err)
	}
	src.mu.Lock()
	ids := src.ids
	src.mu.Unlock()
	if len(ids) != history+live {
		t.Fatalf("%d order events appended, want %d", len(ids), history+live)
	}
	var lostCredit, lostLog, twiceCredit, twiceLog, lostSeen, twiceSeen int
	for _, id := range ids {
		c := got.Caused[id]
		switch n := c["Credited"]; {
		case n == 0:
			lostCredit++
		case n > 1:
			twiceCredit++
		}
		switch n := c["Logged"]; {
		case n == 0:
			lostLog++
		case n > 1:
			twiceLog++
		}
		switch n := got.Seen[id]; {
		case n == 0:
			lostSeen++
		case n > 1:
			twiceSeen++
		}
	}
	commands := 0
	for _, c := range got.Caused {
		commands += c["Credited"] + c["Logged"]
	}
	line := fmt.Sprintf("TestReactorCrash/%s: %d order events, 3 instances sharing the partitions under leases, %d SIGKILLs, %d restarts after a conflict, in %s; "+
		"%d commands executed; lost: %d credits, %d logs, %d counts; executed twice: %d credits, %d logs; counted twice: %d; last run: %s",
		kind, len(ids), killed, restarts, time.Since(began).Round(time.Millisecond), commands,
		lostCredit, lostLog, lostSeen, twiceCredit, twiceLog, twiceSeen, lastLine(finalLog, "instance final"))
	t.Log(line)
	report(t, line)
	if lostCredit+lostLog+lostSeen+twiceCredit+twiceLog+twiceSeen != 0 || commands != 2*len(ids) || len(got.Caused) != len(ids) {
		t.Fatalf("commands lost or executed twice (see above); %d commands for %d events caused by %d events", commands, len(ids), len(got.Caused))
	}
}

// commandsDone counts the commands the targets hold.
func commandsDone(ctx context.Context, client *sierradb.Client) (int, error) {
	n := 0
	for _, tg := range targets() {
		v, err := client.StreamVersion(ctx, crashreact.Targets.StreamID(tg))
		if err != nil {
			return 0, err
		}
		n += int(v + 1)
	}
	return n, nil
}

// report appends a line of counts to $ESMILL_REPORT_DIR/reactor.txt when
// that is set (.ci/run prints them).
func report(t *testing.T, line string) {
	dir := os.Getenv("ESMILL_REPORT_DIR")
	if dir == "" {
		return
	}
	f, err := os.OpenFile(filepath.Join(dir, "reactor.txt"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("report: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}

func lastLine(log, prefix string) string {
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], prefix) {
			return lines[i]
		}
	}
	return ""
}
