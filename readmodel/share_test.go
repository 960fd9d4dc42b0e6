package readmodel_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esmill/esmill/lease"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/memory"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

// countApplied counts, per event position, how often a handler applied
// it: a lost event has no entry, an event applied twice has 2.
func countApplied(ctx context.Context, tx tx, id string, e Credited, m readmodel.Meta) error {
	(*tx.Model())[m.Position.String()]++
	return nil
}

// appendCredits appends n credits spread over many wallets (and so over
// the partitions) and returns their positions.
func appendCredits(t *testing.T, c *sierradb.Client, from, n int) []readmodel.Position {
	t.Helper()
	var pos []readmodel.Position
	for i := from; i < from+n; i++ {
		stream := fmt.Sprintf("wallet-w%d", i)
		ev := credited(t, stream, 1)
		ev.ExpectedVersion = sierradb.ExpectEmpty
		res, err := c.Append(context.Background(), ev)
		if err != nil {
			t.Fatal(err)
		}
		pos = append(pos, readmodel.Position{Partition: res.PartitionID, Sequence: res.PartitionSequence})
	}
	return pos
}

// checkOnce checks that every position was applied exactly once.
func checkOnce(t *testing.T, st *memory.Store[Balances], proj string, pos []readmodel.Position) {
	t.Helper()
	st.Read(proj, func(b Balances) {
		lost, twice := 0, 0
		for _, p := range pos {
			switch n := b[p.String()]; {
			case n == 0:
				lost++
			case n > 1:
				twice++
			}
		}
		if lost > 0 || twice > 0 || len(b) != len(pos) {
			t.Fatalf("%d events: %d lost, %d applied twice, %d entries", len(pos), lost, twice, len(b))
		}
	})
}

// owners returns, per partition, the runners that say they own it.
func owners(rs []*readmodel.Runner[tx]) map[uint16][]string {
	out := make(map[uint16][]string)
	for _, r := range rs {
		st := r.Status()
		for _, p := range st.Partitions {
			if p.Owned {
				out[p.Partition] = append(out[p.Partition], st.Instance)
			}
		}
	}
	return out
}

// Three instances of one projection divide the partitions: each partition
// is worked on by exactly one, every event is applied once, and when one
// instance leaves (and another joins) the others take over its partitions
// within a bounded time.
func TestSharedPartitions(t *testing.T) {
	srv := embedded.RunT(t)
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	st, leases := newStore(), lease.NewMemoryStore()
	start := func(name string) *readmodel.Runner[tx] {
		r, err := readmodel.New(readmodel.Config[tx]{
			Name: "shared", Client: client, Store: st, Handlers: []readmodel.Handler[tx]{readmodel.On(Wallets, countApplied)},
			BatchSize: 20, BatchTimeout: time.Millisecond, Leases: leases, Instance: name, LeaseTTL: 300 * time.Millisecond,
			LagInterval: 20 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	pos := appendCredits(t, client, 0, 300)
	rs := []*readmodel.Runner[tx]{start("a"), start("b"), start("c")}
	settled := func(rs []*readmodel.Runner[tx]) func() bool {
		return func() bool {
			o := owners(rs)
			if len(o) != int(srv.PartitionCount()) {
				return false
			}
			for _, who := range o {
				if len(who) != 1 {
					return false
				}
			}
			for _, r := range rs {
				if r.Status().Owned == 0 {
					return false
				}
			}
			return true
		}
	}
	waitUntil(t, "three instances to divide the partitions", 10*time.Second, settled(rs))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, r := range rs {
		if err := r.WaitFor(ctx, pos...); err != nil {
			t.Fatalf("%s: %v\n%s", r.Status().Instance, err, r.Status())
		}
	}
	checkOnce(t, st, "shared", pos)
	if s := rs[0].Status().String(); !strings.Contains(s, "(instance a)") || !strings.Contains(s, "not owned:") {
		t.Errorf("Status.String() = %s", s)
	}

	// b leaves, d joins; events keep arriving meanwhile.
	closed := make(chan error, 1)
	go func() { closed <- rs[1].Close() }()
	more := appendCredits(t, client, 300, 100)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	rs = []*readmodel.Runner[tx]{rs[0], rs[2], start("d")}
	began := time.Now()
	waitUntil(t, "a, c and d to divide the partitions", 10*time.Second, settled(rs))
	t.Logf("rebalanced after a leave and a join in %s", time.Since(began).Round(time.Millisecond))
	pos = append(pos, more...)
	pos = append(pos, appendCredits(t, client, 400, 100)...)
	for _, r := range rs {
		if err := r.WaitFor(ctx, pos...); err != nil {
			t.Fatalf("%s: %v\n%s", r.Status().Instance, err, r.Status())
		}
	}
	checkOnce(t, st, "shared", pos)
	for _, r := range rs {
		if r.Status().State != readmodel.Live {
			t.Errorf("%s", r.Status())
		}
	}
}

// A fourth instance of a projection with fewer partitions than instances
// is on standby; it takes over when an owner leaves.
func TestSharedStandby(t *testing.T) {
	srv := embedded.RunT(t, embedded.Config{PartitionCount: 2})
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	st, leases := newStore(), lease.NewMemoryStore()
	var rs []*readmodel.Runner[tx]
	for _, name := range []string{"a", "b", "c"} {
		r, err := readmodel.New(readmodel.Config[tx]{
			Name: "standby", Client: client, Store: st, Handlers: []readmodel.Handler[tx]{readmodel.On(Wallets, countApplied)},
			Leases: leases, Instance: name, LeaseTTL: 200 * time.Millisecond, BatchTimeout: time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		rs = append(rs, r)
	}
	states := func() []readmodel.State {
		var out []readmodel.State
		for _, r := range rs {
			out = append(out, r.Status().State)
		}
		slices.Sort(out)
		return out
	}
	waitUntil(t, "two live instances and one on standby", 10*time.Second, func() bool {
		return slices.Equal(states(), []readmodel.State{readmodel.Live, readmodel.Live, readmodel.Standby})
	})
	var idle *readmodel.Runner[tx]
	var busy []*readmodel.Runner[tx]
	for _, r := range rs {
		if r.Status().State == readmodel.Standby {
			idle = r
		} else {
			busy = append(busy, r)
		}
	}
	if err := busy[0].Close(); err != nil {
		t.Fatal(err)
	}
	rest := []*readmodel.Runner[tx]{idle, busy[1]}
	waitUntil(t, "the two others to take over both partitions", 10*time.Second, func() bool {
		o := owners(rest)
		return len(o) == 2 && len(o[0]) == 1 && len(o[1]) == 1
	})
	pos := appendCredits(t, client, 0, 40)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// WaitFor on either instance: the partitions the other one owns are
	// waited for in the store.
	for _, r := range rest {
		if err := r.WaitFor(ctx, pos...); err != nil {
			t.Fatal(err)
		}
	}
	checkOnce(t, st, "standby", pos)
	t.Logf("after the leave: %v", owners(rest))
}

// The progress of a catch-up is logged at a bounded rate, with the rate,
// what remains per partition and an ETA.
func TestProgressLog(t *testing.T) {
	srv := embedded.RunT(t)
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	pos := appendCredits(t, client, 0, 200)
	logs := &records{}
	r, err := readmodel.New(readmodel.Config[tx]{
		Name: "progress", Client: client, Store: newStore(), BatchSize: 5, BatchTimeout: time.Millisecond,
		Handlers: []readmodel.Handler[tx]{readmodel.On(Wallets, func(ctx context.Context, tx tx, id string, e Credited, m readmodel.Meta) error {
			time.Sleep(2 * time.Millisecond) // a catch-up of about a second
			return countApplied(ctx, tx, id, e, m)
		})},
		ProgressInterval: 100 * time.Millisecond, LagInterval: 50 * time.Millisecond, Logger: slog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.WaitFor(ctx, pos...); err != nil {
		t.Fatal(err)
	}
	<-r.Live()
	var progress []slog.Record
	for _, rec := range logs.all() {
		if rec.Message == "readmodel: catching up" {
			progress = append(progress, rec)
		}
	}
	if len(progress) == 0 {
		t.Fatal("no progress was logged during a catch-up of about a second")
	}
	attrs := map[string]string{}
	progress[0].Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
	for _, k := range []string{"events_per_s", "remaining", "remaining_by_partition", "eta"} {
		if attrs[k] == "" {
			t.Errorf("progress log without %s: %v", k, attrs)
		}
	}
	if !strings.Contains(attrs["remaining_by_partition"], "p") {
		t.Errorf("remaining_by_partition = %q", attrs["remaining_by_partition"])
	}
	// Bounded: at most one per interval (and a few for scheduling).
	if d := logs.span(); len(progress) > int(d/(100*time.Millisecond))+2 {
		t.Errorf("%d progress logs in %s at a 100ms interval", len(progress), d)
	}
	t.Logf("%d progress logs, first: %v", len(progress), attrs)
}

// records keeps log records.
type records struct {
	mu    sync.Mutex
	recs  []slog.Record
	first time.Time
}

func (h *records) Enabled(context.Context, slog.Level) bool { return true }
func (h *records) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.first.IsZero() {
		h.first = time.Now()
	}
	h.recs = append(h.recs, r.Clone())
	return nil
}
func (h *records) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *records) WithGroup(string) slog.Handler      { return h }

func (h *records) all() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.recs)
}

func (h *records) span() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return time.Since(h.first)
}

// waitUntil polls cond every 10ms until it holds, failing t after d.
func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
