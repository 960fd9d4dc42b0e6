// Package leasetest is the contract suite that every [lease.Store] must
// pass. A store's tests call [Run] with a constructor of fresh stores.
package leasetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/esmill/esmill/lease"
)

// Run runs the contract against stores made by newStore. Every call of
// newStore may return the same backing store: each case uses a group of
// its own. ttl is the lease time the cases use; it must be long enough
// for a few store round trips (for example 500ms) and the cases wait for
// leases to expire, so keep it short.
func Run(t *testing.T, newStore func(t *testing.T) lease.Store, ttl time.Duration) {
	t.Run("ExclusiveGrant", func(t *testing.T) { exclusiveGrant(t, newStore(t), ttl) })
	t.Run("RenewKeepsToken", func(t *testing.T) { renewKeepsToken(t, newStore(t), ttl) })
	t.Run("ExpiryHandsOver", func(t *testing.T) { expiryHandsOver(t, newStore(t), ttl) })
	t.Run("ReleaseHandsOver", func(t *testing.T) { releaseHandsOver(t, newStore(t), ttl) })
	t.Run("ConcurrentAcquire", func(t *testing.T) { concurrentAcquire(t, newStore(t), ttl) })
	t.Run("Membership", func(t *testing.T) { membership(t, newStore(t), ttl) })
	t.Run("PartitionCount", func(t *testing.T) { partitionCount(t, newStore(t), ttl) })
	t.Run("InvalidNames", func(t *testing.T) { invalidNames(t, newStore(t), ttl) })
	t.Run("GroupPartitions", func(t *testing.T) { groupPartitions(t, newStore(t), ttl) })
}

var groupSeq struct {
	sync.Mutex
	n int
}

func group(t *testing.T) string {
	groupSeq.Lock()
	defer groupSeq.Unlock()
	groupSeq.n++
	return fmt.Sprintf("leasetest-%d-%d", time.Now().UnixNano(), groupSeq.n)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func acquire(t *testing.T, s lease.Store, g, inst string, ttl time.Duration, ps ...int) map[int]uint64 {
	t.Helper()
	grants, err := s.Acquire(ctxT(t), lease.AcquireRequest{Group: g, Instance: inst, Partitions: ps, TTL: ttl})
	if err != nil {
		t.Fatalf("Acquire(%s, %v): %v", inst, ps, err)
	}
	out := make(map[int]uint64, len(grants))
	for _, gr := range grants {
		if !slices.Contains(ps, gr.Partition) {
			t.Fatalf("Acquire(%v) granted partition %d, not asked for", ps, gr.Partition)
		}
		if _, dup := out[gr.Partition]; dup {
			t.Fatalf("Acquire granted partition %d twice", gr.Partition)
		}
		out[gr.Partition] = gr.Token
	}
	return out
}

// live is the lease time of the cases that are not about expiry: long
// enough that no lease expires between their steps on a loaded machine,
// where a step can take longer than the suite's short ttl.
func live(ttl time.Duration) time.Duration { return 20 * ttl }

// waitExpiry waits until a lease taken at taken (local time, before the
// call) has surely expired on the store.
func waitExpiry(taken time.Time, ttl time.Duration) {
	time.Sleep(time.Until(taken.Add(ttl + ttl/2 + 20*time.Millisecond)))
}

func exclusiveGrant(t *testing.T, s lease.Store, ttl time.Duration) {
	g := group(t)
	ttl = live(ttl)
	a := acquire(t, s, g, "a", ttl, 0, 1, 2)
	if len(a) != 3 {
		t.Fatalf("a got %v of free partitions 0,1,2", a)
	}
	b := acquire(t, s, g, "b", ttl, 1, 2, 3)
	if len(b) != 1 || b[3] == 0 {
		t.Fatalf("b got %v; want only partition 3 (1 and 2 are a's)", b)
	}
}

func renewKeepsToken(t *testing.T, s lease.Store, ttl time.Duration) {
	g := group(t)
	ttl = live(ttl)
	first := acquire(t, s, g, "a", ttl, 5)
	for range 3 {
		again := acquire(t, s, g, "a", ttl, 5)
		if again[5] != first[5] || again[5] == 0 {
			t.Fatalf("renewal token %d, first %d: a renewal must keep the token", again[5], first[5])
		}
	}
}

func expiryHandsOver(t *testing.T, s lease.Store, ttl time.Duration) {
	// A machine slower than ttl lets a's lease run out before b asks:
	// then the case is tried again with twice the lease time.
	for d := ttl; d <= 8*ttl; d *= 2 {
		if expiryHandsOverWithin(t, s, d) {
			return
		}
	}
	t.Fatalf("every try took longer than its lease time (up to %v): the store or the machine is too slow for this case", 8*ttl)
}

// expiryHandsOverWithin runs the case with lease time ttl, and reports
// false when it could not tell: a's lease had expired before b asked.
func expiryHandsOverWithin(t *testing.T, s lease.Store, ttl time.Duration) bool {
	g := group(t)
	taken := time.Now()
	a := acquire(t, s, g, "a", ttl, 0)
	if got := acquire(t, s, g, "b", ttl, 0); len(got) != 0 {
		if slow := time.Since(taken); slow >= ttl {
			t.Logf("b asked %v after a's lease of %v was taken: inconclusive", slow, ttl)
			return false
		}
		t.Fatalf("b took a live lease: %v", got)
	}
	waitExpiry(taken, ttl)
	bTaken := time.Now()
	b := acquire(t, s, g, "b", ttl, 0)
	if b[0] <= a[0] {
		t.Fatalf("b's token %d after a's %d: a new holder needs a larger token", b[0], a[0])
	}
	// a's old lease is gone: a asking again does not get it.
	if got := acquire(t, s, g, "a", ttl, 0); len(got) != 0 {
		if slow := time.Since(bTaken); slow >= ttl {
			t.Logf("a asked %v after b's lease of %v was taken: inconclusive", slow, ttl)
			return false
		}
		t.Fatalf("a took back b's live lease: %v", got)
	}
	return true
}

func releaseHandsOver(t *testing.T, s lease.Store, ttl time.Duration) {
	g := group(t)
	ttl = live(ttl)
	ctx := ctxT(t)
	a := acquire(t, s, g, "a", ttl, 0, 1)
	// b's release of a's partitions does nothing.
	if err := s.Release(ctx, g, "b", []int{0, 1}); err != nil {
		t.Fatal(err)
	}
	if got := acquire(t, s, g, "b", ttl, 0, 1); len(got) != 0 {
		t.Fatalf("b's release freed a's leases: b got %v", got)
	}
	if err := s.Release(ctx, g, "a", []int{0}); err != nil {
		t.Fatal(err)
	}
	b := acquire(t, s, g, "b", ttl, 0, 1)
	if len(b) != 1 || b[0] <= a[0] {
		t.Fatalf("after a released 0, b got %v (a had %v); want partition 0 with a larger token", b, a)
	}
	// The same holder taking a partition again after releasing it also
	// gets a new token: its old work may still be about.
	if err := s.Release(ctx, g, "b", []int{0}); err != nil {
		t.Fatal(err)
	}
	b2 := acquire(t, s, g, "b", ttl, 0)
	if b2[0] <= b[0] {
		t.Fatalf("re-acquired after release with token %d, before %d", b2[0], b[0])
	}
}

func concurrentAcquire(t *testing.T, s lease.Store, ttl time.Duration) {
	g := group(t)
	const instances, partitions = 8, 16
	ps := make([]int, partitions)
	for i := range ps {
		ps[i] = i
	}
	var mu sync.Mutex
	owners := make(map[int][]string)
	var wg sync.WaitGroup
	errs := make(chan error, instances)
	for i := range instances {
		inst := fmt.Sprintf("i%d", i)
		wg.Go(func() {
			grants, err := s.Acquire(context.Background(), lease.AcquireRequest{Group: g, Instance: inst, Partitions: ps, TTL: ttl * 20})
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			for _, gr := range grants {
				owners[gr.Partition] = append(owners[gr.Partition], inst)
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, p := range ps {
		if len(owners[p]) != 1 {
			t.Errorf("partition %d granted to %v; want exactly one instance", p, owners[p])
		}
	}
}

func membership(t *testing.T, s lease.Store, ttl time.Duration) {
	g := group(t)
	ctx := ctxT(t)
	hb := func(inst string) lease.Membership {
		t.Helper()
		ms, err := s.Heartbeat(ctx, lease.HeartbeatRequest{Group: g, Instance: inst, Partitions: 4, TTL: ttl})
		if err != nil {
			t.Fatalf("Heartbeat(%s): %v", inst, err)
		}
		return ms
	}
	hb("b")
	ms := hb("a")
	if !slices.Equal(ms.Members, []string{"a", "b"}) || ms.Partitions != 4 {
		t.Fatalf("members %v partitions %d; want [a b] and 4", ms.Members, ms.Partitions)
	}
	if err := s.Leave(ctx, g, "b"); err != nil {
		t.Fatal(err)
	}
	if ms := hb("a"); !slices.Equal(ms.Members, []string{"a"}) {
		t.Fatalf("after b left: %v", ms.Members)
	}
	taken := time.Now()
	hb("c")
	// c stops heartbeating; a goes on: c expires.
	waitExpiry(taken, ttl)
	if ms := hb("a"); !slices.Equal(ms.Members, []string{"a"}) {
		t.Fatalf("c did not expire: %v", ms.Members)
	}
}

func partitionCount(t *testing.T, s lease.Store, ttl time.Duration) {
	g := group(t)
	ctx := ctxT(t)
	if _, err := s.Heartbeat(ctx, lease.HeartbeatRequest{Group: g, Instance: "a", Partitions: 16, TTL: ttl}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Heartbeat(ctx, lease.HeartbeatRequest{Group: g, Instance: "b", Partitions: 8, TTL: ttl})
	var pc *lease.PartitionCountError
	if !errors.As(err, &pc) || pc.Have != 16 || pc.Want != 8 || !errors.Is(err, lease.ErrPartitionCount) {
		t.Fatalf("b with 8 partitions in a 16-partition group: %v", err)
	}
	// a alone may change its mind (a redeploy with a new count).
	if _, err := s.Heartbeat(ctx, lease.HeartbeatRequest{Group: g, Instance: "a", Partitions: 8, TTL: ttl}); err != nil {
		t.Fatalf("the only member changing the count: %v", err)
	}
}

// groupPartitions checks [lease.GroupReader], for stores that have it.
func groupPartitions(t *testing.T, s lease.Store, ttl time.Duration) {
	r, ok := s.(lease.GroupReader)
	if !ok {
		t.Logf("%T does not implement lease.GroupReader (optional): nothing to check", s)
		return
	}
	g := group(t)
	ctx := ctxT(t)
	if n, live, err := r.GroupPartitions(ctx, g); err != nil || live || n != 0 {
		t.Fatalf("an unknown group: %d, %v, %v", n, live, err)
	}
	if _, err := s.Heartbeat(ctx, lease.HeartbeatRequest{Group: g, Instance: "a", Partitions: 12, TTL: ttl}); err != nil {
		t.Fatal(err)
	}
	if n, live, err := r.GroupPartitions(ctx, g); err != nil || !live || n != 12 {
		t.Fatalf("a group with a live member of 12 partitions: %d, %v, %v", n, live, err)
	}
	// Without a live member there is no count to check against.
	if err := s.Leave(ctx, g, "a"); err != nil {
		t.Fatal(err)
	}
	if n, live, err := r.GroupPartitions(ctx, g); err != nil || live {
		t.Fatalf("a group whose only member left: %d, %v, %v", n, live, err)
	}
	if _, _, err := r.GroupPartitions(ctx, "bad group"); !errors.Is(err, lease.ErrInvalidName) {
		t.Fatalf("an invalid group name: %v", err)
	}
}

func invalidNames(t *testing.T, s lease.Store, ttl time.Duration) {
	ctx := ctxT(t)
	_, err := s.Acquire(ctx, lease.AcquireRequest{Group: "bad group", Instance: "a", Partitions: []int{0}, TTL: ttl})
	if !errors.Is(err, lease.ErrInvalidName) {
		t.Fatalf("group with a space: %v", err)
	}
	_, err = s.Heartbeat(ctx, lease.HeartbeatRequest{Group: "g", Instance: "", Partitions: 1, TTL: ttl})
	if !errors.Is(err, lease.ErrInvalidName) {
		t.Fatalf("empty instance: %v", err)
	}
}
