package readmodel_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/test/internal/crashproj"
	"github.com/esmill/esmill/test/internal/sharedproj"
)

// sharer builds the instance program once per test binary.
func sharer(t *testing.T) string {
	t.Helper()
	return testservice.Build(t, "github.com/esmill/esmill/test/readmodel/sharer")
}

// TestSharedCrash runs three processes of one projection, sharing its
// partitions under leases kept in the projection's own store, while 20,000
// events arrive, and SIGKILLs and restarts them at random, or freezes one
// (SIGSTOP) past its leases and thaws it. Every applied
// event is one row, unique on its position: at the end no event is
// missing, none was applied twice (a second application would fail on
// the uniqueness and be parked), and every partition is owned by exactly
// one of the three. One run per store that more than one process can
// share: PostgreSQL, SQLite and the file store.
func TestSharedCrash(t *testing.T) {
	for _, kind := range []string{"postgres", "sqlite", "file"} {
		t.Run(kind, func(t *testing.T) { sharedCrash(t, kind) })
	}
}

// instance is one process of the test, in one of three slots.
type instance struct {
	name string
	proc *testservice.Process
}

func sharedCrash(t *testing.T, kind string) {
	bin := sharer(t)
	total := 20000
	if testing.Short() {
		total = 4000
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	srv := embedded.RunT(t)
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	o := sharedproj.Options{Kind: kind, SierraAddr: srv.Addr(), Name: "shared", BatchSize: 50, LeaseTTL: time.Second, StatusDir: t.TempDir()}
	switch kind {
	case "file":
		o.Target, o.BatchSize = t.TempDir(), 200
	case "sqlite":
		o.Target = filepath.Join(t.TempDir(), "rm.db")
	case "postgres":
		o.Target = testservice.PostgresSchema(ctx, t, "shared_")
	}
	logDir := t.TempDir()
	incarnation := 0
	start := func(slot int) *instance {
		incarnation++
		name := fmt.Sprintf("s%d-%d", slot, incarnation)
		args := []string{"-store", o.Kind, "-target", o.Target, "-sierra", o.SierraAddr, "-name", o.Name,
			"-instance", name, "-batch", fmt.Sprint(o.BatchSize), "-ttl", o.LeaseTTL.String(), "-status", o.StatusDir}
		p, err := testservice.StartProcess(logDir, bin, args, nil)
		if err != nil {
			t.Fatal(err)
		}
		return &instance{name: name, proc: p}
	}
	slots := []*instance{start(0), start(1), start(2)}
	defer func() {
		for _, in := range slots {
			in.proc.Kill()
		}
	}()

	// The writer: 20,000 events in chunks of 50 to 400 streams, spread
	// over about ten seconds, recording each event's position.
	type written struct {
		pos []string
		err error
	}
	writerDone := make(chan written, 1)
	go func() {
		var w written
		versions := map[string]int64{}
		const chunk = 50
		for sent := 0; sent < total; sent += chunk {
			stream := fmt.Sprintf("%s-s%03d", crashproj.Category, (sent/chunk*7)%400)
			v, ok := versions[stream]
			if !ok {
				v = -1
			}
			evs := make([]sierradb.NewEvent, min(chunk, total-sent))
			for i := range evs {
				name, payload, err := crashproj.Accounts.EncodeEvent(crashproj.Deposited{Amount: 1})
				if err != nil {
					w.err = err
					writerDone <- w
					return
				}
				evs[i] = sierradb.NewEvent{StreamID: stream, Name: name, Payload: payload, ExpectedVersion: sierradb.ExpectAfter(v + int64(i))}
			}
			res, err := client.AppendMulti(ctx, sierradb.StreamPartitionKey(stream), evs)
			if err != nil {
				w.err = err
				writerDone <- w
				return
			}
			versions[stream] = v + int64(len(evs))
			for _, ev := range res.Events {
				w.pos = append(w.pos, fmt.Sprintf("%d:%d", res.PartitionID, ev.PartitionSequence))
			}
			time.Sleep(25 * time.Millisecond)
		}
		writerDone <- w
	}()

	// The chaos: while the events arrive and a little longer, a random
	// instance is SIGKILLed every 0.3 to 1 s and restarted, at once or a
	// little later.
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d", seed)
	kills, pauses := 0, 0
	began := time.Now()
	var w written
	writing := true
	var chaosEnd time.Time
	for chaosEnd.IsZero() || time.Now().Before(chaosEnd) {
		pause := time.Duration(300+rng.IntN(700)) * time.Millisecond
		if writing {
			select {
			case w = <-writerDone:
				writing = false
				chaosEnd = time.Now().Add(2 * time.Second)
				if w.err != nil {
					t.Fatal(w.err)
				}
			case <-time.After(pause):
			}
		} else {
			time.Sleep(pause)
		}
		for _, in := range slots {
			select {
			case <-in.proc.Exited():
				t.Fatalf("instance %s exited by itself:\n%s", in.name, in.proc.LogTail(3000))
			default:
			}
		}
		slot := rng.IntN(len(slots))
		if canFreeze && rng.IntN(4) == 0 {
			// Freeze the process past its leases (TTL 1s): the others
			// take its partitions over; when it thaws, its lease has run
			// out, and the checkpoint compare-and-set fences whatever it
			// had in flight.
			in := slots[slot]
			if err := freeze(in.proc.Pid(), true); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(1500+rng.IntN(1000)) * time.Millisecond)
			if err := freeze(in.proc.Pid(), false); err != nil {
				t.Fatal(err)
			}
			pauses++
			continue
		}
		slots[slot].proc.Kill()
		kills++
		if rng.IntN(3) == 0 {
			time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		}
		slots[slot] = start(slot)
	}
	t.Logf("%d events written, %d SIGKILLs and %d SIGSTOPs of 1.5-2.5s in %s", len(w.pos), kills, pauses, time.Since(began).Round(time.Millisecond))
	chaosDone := time.Now()

	// Settle: the three instances apply everything and divide the
	// partitions.
	count := int(srv.PartitionCount())
	var rows map[string]sharedproj.Row
	var parked []string
	var statuses []sharedproj.Status
	settled := func() (bool, string) {
		statuses = statuses[:0]
		owner := make(map[uint16]string)
		for _, in := range slots {
			select {
			case <-in.proc.Exited():
				t.Fatalf("instance %s exited by itself:\n%s", in.name, in.proc.LogTail(3000))
			default:
			}
			s, err := sharedproj.ReadStatus(o.StatusDir, in.name)
			if err != nil {
				return false, fmt.Sprintf("%s: no status yet", in.name)
			}
			statuses = append(statuses, s)
			if time.Since(s.At) > 2*time.Second || s.State != "live" {
				return false, fmt.Sprintf("%s is %s (status of %s ago)", in.name, s.State, time.Since(s.At).Round(time.Millisecond))
			}
			for _, p := range s.Owned {
				if prev, dup := owner[p]; dup {
					return false, fmt.Sprintf("partition %d owned by %s and %s", p, prev, in.name)
				}
				owner[p] = in.name
			}
		}
		if len(owner) != count {
			return false, fmt.Sprintf("%d of %d partitions owned", len(owner), count)
		}
		rows, parked, err = sharedproj.Read(ctx, o)
		if err != nil {
			return false, err.Error()
		}
		if len(rows)+len(parked) < len(w.pos) {
			return false, fmt.Sprintf("%d of %d events applied", len(rows), len(w.pos))
		}
		return true, ""
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ok, why := settled()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			var tails []string
			for _, in := range slots {
				tails = append(tails, in.name+":\n"+in.proc.LogTail(2000))
			}
			t.Fatalf("did not settle: %s\n%s", why, strings.Join(tails, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("settled %s after the last SIGKILL", time.Since(chaosDone).Round(time.Millisecond))

	// The counts.
	lost, extra, twice := 0, 0, 0
	want := make(map[string]bool, len(w.pos))
	for _, p := range w.pos {
		want[p] = true
		if _, ok := rows[p]; !ok {
			lost++
		}
	}
	byInstance := map[string]int{}
	for p, r := range rows {
		if !want[p] {
			extra++
		}
		byInstance[strings.SplitN(r.Instance, "-", 2)[0]]++
	}
	for _, reason := range parked {
		if strings.Contains(reason, "applied twice") || strings.Contains(reason, "SQLSTATE 23505") {
			twice++
		}
	}
	var conflicts uint64
	var owned []string
	for _, s := range statuses {
		conflicts += s.Conflicts
		owned = append(owned, fmt.Sprintf("%s: %d", s.Instance, len(s.Owned)))
	}
	slices.Sort(owned)
	t.Logf("%s: %d events, %d processes started, %d SIGKILLed, %d frozen past their leases; applied %d (by slot %v), lost %d, applied twice %d, unexpected %d, parked %d; "+
		"checkpoint conflicts of the last three %d; partitions owned at the end %v",
		kind, len(w.pos), incarnation, kills, pauses, len(rows), byInstance, lost, twice, extra, len(parked), conflicts, owned)
	if lost > 0 || twice > 0 || extra > 0 || len(parked) > 0 {
		t.Fatalf("lost %d, applied twice %d, unexpected %d, parked %v: want all 0", lost, twice, extra, parked)
	}
	if kills == 0 {
		t.Fatal("the chaos killed nothing")
	}
	// A graceful stop of the last three.
	for _, in := range slots {
		in.proc.Stop(10 * time.Second)
	}
}
