package readmodel_test

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
	"github.com/esmill/esmill/test/internal/crashproj"
	"github.com/esmill/esmill/test/internal/ferret"
)

// projector builds the projection program once per test binary.
func projector(t *testing.T) string {
	t.Helper()
	return testservice.Build(t, "github.com/esmill/esmill/test/readmodel/projector")
}

// crashRef appends the crash tests' events and keeps the reference read
// model.
type crashRef struct {
	client   *sierradb.Client
	versions map[string]int64
	ref      map[string]crashproj.Acct
	n        int
	mu       sync.Mutex
	total    int
}

func (c *crashRef) append(ctx context.Context, n int) error {
	byStream := make(map[string][]sierradb.NewEvent)
	var order []string
	for range n {
		i := c.n
		c.n++
		id := fmt.Sprintf("a%03d", (i*37)%200)
		stream := crashproj.Category + "-" + id
		amount := int64(i%97 + 1)
		name, payload, err := crashproj.Accounts.EncodeEvent(crashproj.Deposited{Amount: amount})
		if err != nil {
			return err
		}
		if _, ok := byStream[stream]; !ok {
			order = append(order, stream)
		}
		byStream[stream] = append(byStream[stream], sierradb.NewEvent{StreamID: stream, Name: name, Payload: payload})
		v, ok := c.versions[stream]
		if !ok {
			v = -1
		}
		v++
		c.versions[stream] = v
		a := c.ref[id]
		a.Apply(amount, uint64(v))
		c.ref[id] = a
	}
	for _, stream := range order {
		evs := byStream[stream]
		v := c.versions[stream] - int64(len(evs))
		for len(evs) > 0 {
			chunk := evs[:min(len(evs), 100)]
			evs = evs[len(chunk):]
			for i := range chunk {
				chunk[i].ExpectedVersion = sierradb.ExpectAfter(v)
				v++
			}
			if _, err := c.client.AppendMulti(ctx, sierradb.StreamPartitionKey(stream), chunk); err != nil {
				return err
			}
		}
	}
	c.mu.Lock()
	c.total += n
	c.mu.Unlock()
	return nil
}

func (c *crashRef) appended() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// TestCrash kills the projection process (SIGKILL) at random points, many
// times, while it catches up on 10,000 events (4,000 on MongoDB) and while
// new ones arrive;
// after the last restart the read model must equal the reference: no event
// lost, none applied twice. One run per durable store.
func TestCrash(t *testing.T) {
	for _, kind := range []string{"file", "sqlite", "postgres", "mongodb"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			crash(t, kind)
		})
	}
}

func crash(t *testing.T, kind string) {
	bin := projector(t)
	history, live, kills := 10000, 2000, 15
	if kind == "mongodb" {
		// Through FerretDB every guarded write is several statements; a
		// loaded CI machine applies a few dozen events a second.
		history, live = 4000, 800
	}
	if testing.Short() {
		history, live, kills = 2000, 400, 5
	}
	// A bound for the whole test, below go test's own; the last run is
	// waited for by its progress (below), not by this.
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	srv := embedded.RunT(t)
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	o := crashproj.Options{Kind: kind, SierraAddr: srv.Addr(), Name: "crash", BatchSize: 50}
	switch kind {
	case "file":
		o.Target = t.TempDir()
	case "sqlite":
		o.Target = filepath.Join(t.TempDir(), "rm.db")
	case "postgres":
		o.Target = testservice.PostgresSchema(ctx, t, "crash_")
	case "mongodb":
		o.Target, o.Database = ferret.Require(t), randomName("crash_")
	}
	args := []string{"-store", o.Kind, "-target", o.Target, "-database", o.Database, "-sierra", o.SierraAddr,
		"-name", o.Name, "-batch", fmt.Sprint(o.BatchSize)}

	ref := &crashRef{client: client, versions: make(map[string]int64), ref: make(map[string]crashproj.Acct)}
	if err := ref.append(ctx, history); err != nil {
		t.Fatal(err)
	}
	// New events arrive while the projection is killed and restarted. The
	// writer reports through writerDone and is joined before the test
	// returns, however it ends.
	writerDone := make(chan error, 1)
	writerExited := make(chan struct{})
	defer func() {
		cancel()
		<-writerExited
	}()
	go func() {
		defer close(writerExited)
		for sent := 0; sent < live; sent += 20 {
			if err := ref.append(ctx, min(20, live-sent)); err != nil {
				writerDone <- err
				return
			}
			time.Sleep(15 * time.Millisecond)
		}
		writerDone <- nil
	}()

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d", seed)
	start := time.Now()
	applied := func() int64 {
		m, err := crashproj.Read(ctx, o)
		if err != nil {
			return -1 // the store is not there yet
		}
		var n int64
		for _, a := range m {
			n += a.Count
		}
		return n
	}
	duringHistory := 0 // kills that left the history not yet caught up
	for i := range kills {
		p, err := testservice.StartProcess(t.TempDir(), bin, args, nil)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// The first kill falls during the catch-up on the history
			// for certain: as soon as the model shows progress.
			// (The file store is locked while the projector runs:
			// its first commit shows as the projection's file.)
			progressed := func() bool {
				if kind == "file" {
					_, err := os.Stat(filepath.Join(o.Target, o.Name+".json"))
					return err == nil
				}
				return applied() > 0
			}
			deadline := time.Now().Add(time.Minute)
			for !progressed() {
				select {
				case <-p.Exited():
					t.Fatalf("run 0: projector exited by itself:\n%s", p.LogTail(4000))
				default:
				}
				if time.Now().After(deadline) {
					p.Kill()
					t.Fatalf("run 0 applied nothing in a minute:\n%s", p.LogTail(4000))
				}
				time.Sleep(2 * time.Millisecond)
			}
			p.Kill()
		} else {
			// Mostly short runs, so that the kills fall while the
			// history is caught up on (the fast stores apply 10,000
			// events in a few hundred milliseconds), at random points
			// of the batch cycle.
			d := 10*time.Millisecond + time.Duration(rng.Int64N(int64(150*time.Millisecond)))
			if i%5 == 4 {
				// Now and then a longer run, to get further.
				d += time.Second
			}
			select {
			case <-p.Exited():
				t.Fatalf("run %d: projector exited by itself:\n%s", i, p.LogTail(4000))
			case <-time.After(d):
			}
			p.Kill()
		}
		n := applied()
		if n >= 0 && n < int64(history) {
			duringHistory++
		}
		t.Logf("killed run %d: %d of %d events applied", i, n, ref.appended())
	}
	if duringHistory == 0 {
		t.Fatalf("no kill fell during the catch-up on the history")
	}
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d kills in %s, %d of them during the catch-up on the history", kills, time.Since(start).Round(time.Millisecond), duringHistory)

	final, err := testservice.StartProcess(t.TempDir(), bin, append(args, "-until-synced"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The last run is waited for as long as it makes progress: it fails
	// after a minute without any (a stall), not at a deadline guessed for
	// an idle machine. Progress is the applied count, or for the file
	// store (locked while the projector runs) its file changing.
	progress := func() string {
		if kind == "file" {
			fi, err := os.Stat(filepath.Join(o.Target, o.Name+".json"))
			if err != nil {
				return ""
			}
			return fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
		}
		return fmt.Sprint(applied())
	}
	last, lastChange := progress(), time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
wait:
	for {
		select {
		case <-final.Exited():
			break wait
		case <-ctx.Done():
			final.Kill()
			t.Fatalf("the last run did not catch up before the test's bound:\n%s", final.LogTail(4000))
		case <-tick.C:
			if p := progress(); p != last {
				last, lastChange = p, time.Now()
			} else if time.Since(lastChange) > time.Minute {
				final.Kill()
				t.Fatalf("the last run made no progress for a minute (at %s):\n%s", last, final.LogTail(4000))
			}
		}
	}
	if !strings.Contains(final.LogTail(4000), "synced") {
		t.Fatalf("the last run failed:\n%s", final.LogTail(4000))
	}
	t.Logf("last run caught up in %s", time.Since(start).Round(time.Millisecond))

	got, err := crashproj.Read(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ref.ref) {
		t.Errorf("read model has %d accounts, want %d", len(got), len(ref.ref))
	}
	var events, lost, twice int64
	for id, want := range ref.ref {
		events += want.Count
		g := got[id]
		if g != want {
			t.Errorf("account %s = %+v, want %+v", id, g, want)
		}
		if d := g.Count - want.Count; d > 0 {
			twice += d
		} else {
			lost -= d
		}
	}
	t.Logf("%d events: %d lost, %d applied twice", events, lost, twice)
	if events != int64(history+live) {
		t.Fatalf("reference holds %d events, want %d", events, history+live)
	}
}
