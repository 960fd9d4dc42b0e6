package readmodel_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/lease"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

// Under HoldEntity with shared partitions, an instance that gains a
// partition learns which of its streams are held (it reads the parked
// events after the checkpoints, each round): an event parked by the
// partition's previous owner after the new one started still holds the
// later events of its stream, which the new owner parks behind it instead
// of applying them; a replay through the new owner then applies them all
// once, in stream order.
func TestHoldEntitySharedPartitions(t *testing.T) {
	srv := embedded.RunT(t)
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	st, leases := newStore(), lease.NewMemoryStore()
	var fixed atomic.Bool
	var order []int64 // amounts of stream S in the order applied
	h := readmodel.On(Wallets, func(ctx context.Context, tx tx, id string, e Credited, m readmodel.Meta) error {
		if e.Amount == 13 && !fixed.Load() {
			return esmill.MarkFinal(errors.New("13 is unlucky"))
		}
		(*tx.Model())[id] += e.Amount
		if id == "s" {
			order = append(order, e.Amount)
		}
		return nil
	})
	start := func(name string) *readmodel.Runner[tx] {
		r, err := readmodel.New(readmodel.Config[tx]{
			Name: "held", Client: client, Store: st, Handlers: []readmodel.Handler[tx]{h}, Hold: readmodel.HoldEntity,
			BatchTimeout: time.Millisecond, Leases: leases, Instance: name, LeaseTTL: 300 * time.Millisecond,
			LagInterval: time.Hour, // no reloading of the parked events but the round's
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
	a := start("a")
	waitUntil(t, "a to own every partition", 10*time.Second, func() bool { return a.Status().Owned == int(srv.PartitionCount()) })
	b := start("b") // b reads the parked events now: none
	waitUntil(t, "a and b to share the partitions", 10*time.Second, func() bool {
		return b.Status().Owned > 0 && a.Status().Owned+b.Status().Owned == int(srv.PartitionCount())
	})

	version := int64(-1)
	appendS := func(amount int64) readmodel.Position {
		t.Helper()
		ev := credited(t, "wallet-s", amount)
		ev.ExpectedVersion = sierradb.ExpectAfter(version)
		version++
		res, err := client.Append(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		return readmodel.Position{Partition: res.PartitionID, Sequence: res.PartitionSequence}
	}
	poison := appendS(13)
	appendS(1)
	owner, other := a, b
	if b.Status().Partitions[poison.Partition].Owned {
		owner, other = b, a
	}
	waitUntil(t, "the poison event and the next one to be parked", 10*time.Second, func() bool {
		evs, err := st.Parked(ctx, "held")
		return err == nil && len(evs) == 2
	})
	// The owner leaves; the other gains the partition and must hold the
	// stream's next event too.
	owner.Close()
	waitUntil(t, "the other instance to gain the partition", 10*time.Second, func() bool { return other.Status().Partitions[poison.Partition].Owned })
	third := appendS(2)
	if err := other.WaitFor(ctx, third); err != nil {
		t.Fatal(err)
	}
	evs, err := st.Parked(ctx, "held")
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || evs[2].Position != third || evs[2].Cause != readmodel.CauseHeld {
		t.Fatalf("parked %+v; want the poison event and two held behind it, the last at %s", evs, third)
	}
	st.Read("held", func(m Balances) {
		if m["s"] != 0 {
			t.Fatalf("stream s at %d: an event was applied behind its parked one", m["s"])
		}
	})
	fixed.Store(true)
	out, err := other.Replay(ctx, poison, "test", "fixed")
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Released) != 2 || out.Blocked != nil {
		t.Fatalf("released %v, blocked %v; want both held events", out.Released, out.Blocked)
	}
	st.Read("held", func(m Balances) {
		if m["s"] != 16 || len(order) != 3 || order[0] != 13 || order[1] != 1 || order[2] != 2 {
			t.Fatalf("stream s at %d, applied in the order %v; want 16 from 13, 1, 2", m["s"], order)
		}
	})
}
