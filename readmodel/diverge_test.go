package readmodel_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/memory"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

func fastClient(t *testing.T, addr string) *sierradb.Client {
	t.Helper()
	c, err := sierradb.New(sierradb.Config{Addr: addr, ReconnectMinBackoff: 5 * time.Millisecond, ReconnectMaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func divRunner(t *testing.T, c *sierradb.Client, st readmodel.Store[tx], policy readmodel.DivergedPolicy) *readmodel.Runner[tx] {
	t.Helper()
	r, err := readmodel.New(readmodel.Config[tx]{
		Name: "div", Client: c, Store: st, Handlers: []readmodel.Handler[tx]{readmodel.On(Wallets, countApplied)},
		BatchTimeout: time.Millisecond, OnDiverged: policy, LagInterval: 10 * time.Millisecond,
		// A head below a checkpoint is given ConfirmWait to catch up.
		ConfirmWait: 50 * time.Millisecond,
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

func model(st *memory.Store[Balances]) Balances {
	var out Balances
	st.Read("div", func(b Balances) { out = maps.Clone(b) })
	return out
}

func waitDone(t *testing.T, r *readmodel.Runner[tx]) {
	t.Helper()
	select {
	case <-r.Done():
	case <-time.After(20 * time.Second):
		t.Fatalf("the runner did not stop:\n%s", r.Status())
	}
}

// A memory-mode server restarted under a running projection has lost the
// events the projection applied: after its reconnection the runner finds
// another server identity and stops (StopDiverged) instead of subscribing
// from its checkpoints, which would skip the new server's first events.
// Started again on the new server it refuses at once, and under
// HoldDiverged it holds every partition; no event of the new server is
// applied, none is skipped.
func TestDivergedMemoryServerRestarted(t *testing.T) {
	srv := embedded.RunT(t)
	addr := srv.Addr()
	c := fastClient(t, addr)
	st := newStore()
	r := divRunner(t, c, st, readmodel.StopDiverged)
	pos := appendCredits(t, c, 0, 70)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.WaitFor(ctx, pos...); err != nil {
		t.Fatal(err)
	}
	before := model(st)
	cps, err := st.Checkpoints(ctx, "div")
	if err != nil {
		t.Fatal(err)
	}

	srv.Close()
	srv2, err := embedded.Start(embedded.Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	waitDone(t, r)
	var div *readmodel.DivergedError
	if !errors.Is(r.Err(), readmodel.ErrDiverged) || !errors.As(r.Err(), &div) || div.Server == div.Recorded {
		t.Fatalf("runner ended with %v, want a DivergedError naming another server", r.Err())
	}
	s := r.Status()
	if len(s.Diverged()) == 0 || s.Server == s.RecordedServer || !strings.Contains(s.String(), "DIVERGED") {
		t.Fatalf("status after the restart:\n%s", s)
	}
	for _, p := range s.Diverged() {
		if cp, ok := cps[p.Partition]; ok && p.Applied != int64(cp) {
			t.Errorf("partition %d: status says checkpoint %d, the store %d", p.Partition, p.Applied, cp)
		}
	}
	t.Logf("status after the restart: %s", strings.SplitN(s.String(), "\n", 3)[:2])

	// The new server fills up; the projection must not pick up from its
	// old checkpoints.
	fresh := appendCredits(t, c, 1000, 70)
	again := divRunner(t, c, st, readmodel.StopDiverged)
	waitDone(t, again)
	if !errors.Is(again.Err(), readmodel.ErrDiverged) {
		t.Fatalf("a runner started on the new server: %v, want ErrDiverged", again.Err())
	}
	held := divRunner(t, c, st, readmodel.HoldDiverged)
	waitUntil(t, "the runner to hold every partition", 10*time.Second, func() bool {
		s := held.Status()
		return s.State == readmodel.Diverged && len(s.Diverged()) == len(s.Partitions)
	})
	// Not a pause: the runner has read heads that include the new
	// server's 70 events (it knows they exist) and still holds them.
	heads := map[uint16]int64{}
	for _, p := range fresh {
		heads[p.Partition] = max(heads[p.Partition], int64(p.Sequence))
	}
	waitUntil(t, "the held runner to see the new server's heads", 10*time.Second, func() bool {
		for _, p := range held.Status().Partitions {
			if h, ok := heads[p.Partition]; ok && p.Head < h {
				return false
			}
		}
		return true
	})
	if got := model(st); !maps.Equal(got, before) {
		t.Fatalf("the read model changed: %d entries, want the %d from the first server", len(got), len(before))
	}
	if got, _ := st.Checkpoints(ctx, "div"); !maps.Equal(got, cps) {
		t.Fatalf("checkpoints moved: %v, want %v", got, cps)
	}
	if s := held.Status(); s.State == readmodel.Live || s.Err != nil {
		t.Fatalf("held runner: %s", s)
	}
}

// A read model pointed at a second, empty server fails loudly at start.
func TestDivergedAnotherServer(t *testing.T) {
	a, b := embedded.RunT(t), embedded.RunT(t)
	ca, cb := fastClient(t, a.Addr()), fastClient(t, b.Addr())
	st := newStore()
	r := divRunner(t, ca, st, readmodel.StopDiverged)
	pos := appendCredits(t, ca, 0, 50)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.WaitFor(ctx, pos...); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	appendCredits(t, cb, 0, 50)
	other := divRunner(t, cb, st, readmodel.StopDiverged)
	waitDone(t, other)
	var div *readmodel.DivergedError
	if !errors.As(other.Err(), &div) || div.Server == div.Recorded {
		t.Fatalf("runner on another server: %v, want a DivergedError naming both servers", other.Err())
	}
	if !strings.Contains(div.Error(), div.Recorded) || !strings.Contains(div.Error(), div.Server) {
		t.Fatalf("error does not name both servers: %v", div)
	}
	if n := len(model(st)); n != 50 {
		t.Fatalf("read model holds %d events, want the first server's 50", n)
	}
}

// A directory-mode server whose last record was torn off (a crash) comes
// back with a partition's head below the projection's checkpoint: the
// runner finds it before resuming and stops; a runner started afterwards
// finds it too, and under HoldDiverged goes on with the other partitions.
func TestDivergedTornTail(t *testing.T) {
	dir := t.TempDir()
	srv, err := embedded.Start(embedded.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	c := fastClient(t, addr)
	if _, err := c.ServerID(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := newStore()
	r := divRunner(t, c, st, readmodel.StopDiverged)
	pos := appendCredits(t, c, 0, 100)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.WaitFor(ctx, pos...); err != nil {
		t.Fatal(err)
	}
	// The partition with the most events, whose last record is one of
	// ours, loses it.
	last := map[uint16]uint64{}
	for _, p := range pos {
		last[p.Partition] = max(last[p.Partition], p.Sequence)
	}
	var victim uint16
	for p, s := range last {
		if s > last[victim] {
			victim = p
		}
	}
	srv.Close()
	path := filepath.Join(dir, fmt.Sprintf("partition-%05d.log", victim))
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()-1); err != nil {
		t.Fatal(err)
	}
	srv2, err := embedded.Start(embedded.Config{Dir: dir, Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	if len(srv2.Recovery()) == 0 {
		t.Fatal("the server did not cut a torn tail")
	}
	waitDone(t, r)
	var div *readmodel.DivergedError
	if !errors.As(r.Err(), &div) || div.Server != div.Recorded || len(div.Partitions) != 1 ||
		div.Partitions[0].Partition != victim || div.Partitions[0].Checkpoint != int64(last[victim]) || div.Partitions[0].Head != int64(last[victim])-1 {
		t.Fatalf("runner ended with %v; want partition %d diverged at checkpoint %d, head %d", r.Err(), victim, last[victim], last[victim]-1)
	}

	before := model(st)
	held := divRunner(t, c, st, readmodel.HoldDiverged)
	// (Events appended to the partition before the runner compares its
	// head would hide the loss: the head check sees only a head below
	// the checkpoint. See "Divergence" in the package documentation.)
	waitUntil(t, "the runner to hold the partition", 10*time.Second, func() bool { return held.Status().State == readmodel.Diverged })
	// The lag is not clamped: the head is one below the checkpoint.
	if d := held.Status().Diverged(); len(d) != 1 || d[0].Head != int64(last[victim])-1 || d[0].Lag != -1 {
		t.Fatalf("held partition's status: %+v, want head %d, lag -1", d, last[victim]-1)
	}
	more := appendCredits(t, c, 1000, 100)
	var want []readmodel.Position
	for _, p := range more {
		if p.Partition != victim {
			want = append(want, p)
		}
	}
	if err := held.WaitFor(ctx, want...); err != nil {
		t.Fatal(err)
	}
	s := held.Status()
	d := s.Diverged()
	if s.State != readmodel.Diverged || len(d) != 1 || d[0].Partition != victim || d[0].Applied != int64(last[victim]) || d[0].Head < d[0].Applied-1 {
		t.Fatalf("held runner:\n%s", s)
	}
	got := model(st)
	for _, p := range more {
		// The held partition's new events are not applied (its new
		// event at the lost position reuses the old one's key).
		want := int64(1)
		if p.Partition == victim {
			want = before[p.String()]
		}
		if n := got[p.String()]; n != want {
			t.Fatalf("position %s applied %d times, want %d (partition %d is held)", p, n, want, victim)
		}
	}
	t.Logf("held: %s", strings.SplitN(s.String(), "\n", 2)[0])
}
