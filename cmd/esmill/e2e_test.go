package main_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/esmill/esmill/cmd/esmill/internal/shop"
	"github.com/esmill/esmill/esadmin"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/sierradb"
)

const (
	esmillPkg    = "github.com/esmill/esmill/cmd/esmill"
	testadminPkg = "github.com/esmill/esmill/cmd/esmill/internal/testadmin"
)

// The esmill command against real SierraDB and PostgreSQL: status shows
// the lag of a projection that catches up drop to 0 (--watch); an event
// its broken handler parked is listed, shown decoded, refused a replay by
// esmill (which has no handlers) and replayed by a program that embeds the
// commands with the fixed handler; another is skipped; stream show and
// tail print kameo_es-format events decoded. The read model ends equal to
// the deposits applied.
func TestStatusParkedStream(t *testing.T) {
	esmill, admin := build(t, esmillPkg), build(t, testadminPkg)
	e := newEnv(t)
	var bad sierradb.AppendResult
	for i := range 60 {
		id := fmt.Sprintf("a%d", i%6)
		if i == 31 {
			bad = e.deposit(id, shop.BadAmount, false)
			continue
		}
		e.deposit(id, int64(i%10+1), true)
	}
	badPos := readmodel.Position{Partition: bad.PartitionID, Sequence: bad.PartitionSequence}

	// status --watch: behind, then (once the projection runs) 0.
	watch := exec.CommandContext(e.ctx, esmill, "status", "--json", "--watch", "100ms", "--projection", shop.Projection)
	watch.Env = append(os.Environ(), e.vars...)
	var werr strings.Builder
	watch.Stderr = &werr
	pipe, err := watch.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { watch.Process.Kill(); watch.Wait() })
	lines := bufio.NewScanner(pipe)
	lines.Buffer(nil, 1<<20)
	next := func() esadmin.Status {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("status --watch ended: %v; stderr: %s", lines.Err(), werr.String())
		}
		return decode[esadmin.Status](t, lines.Text())
	}
	first := next()
	if len(first.Targets) != 1 || first.Targets[0].Name != shop.Projection || first.Targets[0].Lag <= 0 || first.Targets[0].State != esadmin.StateBehind {
		t.Fatalf("before the projection runs: %+v, want balances behind", first)
	}
	r, err := readmodel.New(shop.Config(e.client, e.store, e.prefix, "_"+e.prefix))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	rounds := 1
	for {
		st := next()
		rounds++
		ts := st.Targets[0]
		if ts.Lag == 0 {
			if ts.State != esadmin.StateCaughtUp || ts.Parked != 1 {
				t.Fatalf("lag 0 but %+v, want caught-up with 1 parked", ts)
			}
			for _, p := range ts.Partitions {
				if p.Lag != 0 || p.Checkpoint != p.Head {
					t.Fatalf("partition %+v at total lag 0", p)
				}
			}
			break
		}
	}
	watch.Process.Signal(os.Interrupt)
	for lines.Scan() {
	}
	if err := watch.Wait(); err != nil {
		t.Fatalf("status --watch after SIGINT: %v; stderr: %s", err, werr.String())
	}
	t.Logf("status --watch: lag %d, then 0 after %d rounds", first.Targets[0].Lag, rounds)
	if err := r.Sync(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.checkModel("caught up, one deposit parked")
	if out := e.ok(esmill, "status", "--projection", shop.Projection); !strings.HasPrefix(out, "NAME ") ||
		!strings.Contains(out, "balances  stored") || !strings.Contains(out, "caught-up") || strings.Contains(out, "behind") {
		t.Fatalf("status (table):\n%s", out)
	} else {
		t.Logf("esmill status:\n%s", out)
	}

	// parked list and show.
	list := decode[[]esadmin.ParkedJSON](t, e.ok(esmill, "parked", "list", "--json"))
	if len(list) != 1 || list[0].Position != badPos.String() || list[0].Cause != string(readmodel.CauseHandler) ||
		!strings.Contains(list[0].Reason, "cannot apply a deposit of 13") {
		t.Fatalf("parked list = %+v, want the deposit of 13 at %s", list, badPos)
	}
	if out := e.ok(esmill, "parked", "list"); !strings.Contains(out, badPos.String()) || !strings.Contains(out, "cannot apply") {
		t.Fatalf("parked list (table):\n%s", out)
	} else {
		t.Logf("esmill parked list:\n%s", out)
	}
	shown := decode[esadmin.ParkedJSON](t, e.ok(esmill, "parked", "show", "--projection", shop.Projection, badPos.String(), "--json"))
	checkDecoded(t, shown.Event, e.stream("a1"), shop.BadAmount)

	// esmill cannot replay; the program with the fixed handler can.
	res := e.run(esmill, "parked", "replay", "--projection", shop.Projection, badPos.String())
	if res.code != 1 || strings.Count(strings.TrimSpace(res.stderr), "\n") != 0 || !strings.Contains(res.stderr, "without the projection's handlers") {
		t.Fatalf("esmill parked replay: exit %d, stderr %q; want 1 and one line about handlers", res.code, res.stderr)
	}
	out := decode[esadmin.ResolveJSON](t, e.ok(admin, "parked", "replay", "--projection", shop.Projection, "--by", "e2e", "--note", "fixed in v2", badPos.String(), "--json"))
	if out.Action != "replayed" || out.Position != badPos.String() {
		t.Fatalf("replay printed %+v", out)
	}
	r1 := e.model[e.id("a1")]
	r1.N++
	r1.Total += shop.BadAmount
	e.model[e.id("a1")] = r1
	e.checkModel("after the replay")
	if res := e.run(admin, "parked", "replay", "--projection", shop.Projection, badPos.String()); res.code != 1 || !strings.Contains(res.stderr, "has no event parked at") {
		t.Fatalf("a second replay: exit %d, stderr %q; want 1, not parked", res.code, res.stderr)
	}
	e.checkModel("after a second replay")

	// skip.
	bad2 := e.deposit("a4", shop.BadAmount, false)
	pos2 := readmodel.Position{Partition: bad2.PartitionID, Sequence: bad2.PartitionSequence}
	eventually(t, "the second bad deposit is parked", func() bool {
		evs, err := e.store.Parked(e.ctx, shop.Projection)
		return err == nil && len(evs) == 1 && evs[0].Position == pos2
	})
	if out := e.ok(esmill, "parked", "skip", "--projection", shop.Projection, "--note", "bad data", pos2.String()); !strings.Contains(out, "skipped "+pos2.String()) {
		t.Fatalf("skip printed %q", out)
	}
	resolved, err := e.store.Resolved(e.ctx, shop.Projection)
	if err != nil || len(resolved) != 2 {
		t.Fatalf("resolved %+v, %v", resolved, err)
	}
	for _, r := range resolved { // in position order
		want := readmodel.Resolution{Action: readmodel.Replayed, By: "e2e", Note: "fixed in v2"}
		if r.Position == pos2 {
			want = readmodel.Resolution{Action: readmodel.Skipped, By: r.Resolution.By, Note: "bad data"}
		}
		if r.Resolution.Action != want.Action || r.Resolution.By != want.By || r.Resolution.Note != want.Note || !strings.HasSuffix(r.Resolution.By, "(esmill)") && r.Position == pos2 {
			t.Fatalf("resolved %s as %+v, want %+v", r.Position, r.Resolution, want)
		}
	}
	if list := decode[[]esadmin.ParkedJSON](t, e.ok(esmill, "parked", "list", "--json")); len(list) != 0 {
		t.Fatalf("parked after the skip: %+v", list)
	}

	// stream show.
	var evs []esadmin.Event
	for _, l := range strings.Split(strings.TrimSpace(e.ok(esmill, "stream", "show", e.stream("a1"), "--json")), "\n") {
		evs = append(evs, decode[esadmin.Event](t, l))
	}
	if int64(len(evs)) != e.versions[e.stream("a1")]+1 {
		t.Fatalf("stream show printed %d events, the stream has %d", len(evs), e.versions[e.stream("a1")]+1)
	}
	for i, ev := range evs {
		if ev.StreamVersion != uint64(i) || ev.Timestamp == nil {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
	checkDecoded(t, evs[bad.StreamVersion], e.stream("a1"), shop.BadAmount)

	// tail: events of the category only, as they are appended.
	tail := exec.CommandContext(e.ctx, esmill, "tail", shop.Category, "--count", "2", "--json")
	tail.Env = append(os.Environ(), e.vars...)
	var tout, terr strings.Builder
	tail.Stdout, tail.Stderr = &tout, &terr
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tail.Wait() }()
	for n := 0; ; n++ {
		if n == 300 {
			tail.Process.Kill()
			<-done
			t.Fatalf("tail printed %q in 30s; stderr %s", tout.String(), terr.String())
		}
		if _, err := e.client.Append(e.ctx, sierradb.NewEvent{StreamID: "other-" + e.prefix, Name: "Noise", Payload: []byte(`{"Noise":{}}`),
			ExpectedVersion: sierradb.ExpectAfter(int64(n) - 1)}); err != nil {
			t.Fatal(err)
		}
		e.deposit("t1", 5, true)
		var err error
		select {
		case err = <-done:
		case <-time.After(100 * time.Millisecond):
			continue
		}
		if err != nil {
			t.Fatalf("tail: %v; stderr %s", err, terr.String())
		}
		break
	}
	tailed := strings.Split(strings.TrimSpace(tout.String()), "\n")
	if len(tailed) != 2 {
		t.Fatalf("tail --count 2 printed %d lines: %q", len(tailed), tout.String())
	}
	for _, l := range tailed {
		if ev := decode[esadmin.Event](t, l); ev.StreamID != e.stream("t1") || ev.Name != "Deposited" {
			t.Fatalf("tail printed %+v, want acct-t1's deposits only", ev)
		}
	}
	if err := r.Sync(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.checkModel("at the end")
}

// checkDecoded checks a decoded deposit written as kameo_es writes it.
func checkDecoded(t *testing.T, ev esadmin.Event, stream string, amount int64) {
	t.Helper()
	b, _ := json.Marshal(ev.Payload)
	if ev.StreamID != stream || ev.Name != "Deposited" || ev.PayloadFormat != "cbor" || string(b) != fmt.Sprintf(`{"Deposited":{"amount":%d}}`, amount) {
		t.Fatalf("decoded %+v, payload %s", ev, b)
	}
	m := ev.Metadata
	if m == nil || m.Command != "Deposit" || m.Causation == nil || m.Causation.StreamID != "pay-1" || m.Causation.StreamVersion != 7 ||
		m.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || !strings.HasPrefix(m.CommandID, "cmd-") {
		t.Fatalf("decoded metadata %+v", m)
	}
}
