package lease_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/lease"
	"github.com/esmill/esmill/lease/leasetest"
)

// childEnv makes the test binary a child process of
// TestMultiProcessExclusive (Linux only).
const childEnv = "ESMILL_LEASE_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	os.Exit(testservice.Main(m))
}

func TestAssign(t *testing.T) {
	members := []string{"a", "b", "c", "d"}
	const partitions = 64
	seen := make(map[int]string)
	for _, m := range members {
		own := lease.Assign(members, m, partitions)
		if n := len(own); n < 6 || n > 28 {
			t.Errorf("%s owns %d of %d partitions among 4 members; the spread is too uneven", m, n, partitions)
		}
		for _, p := range own {
			if prev, dup := seen[p]; dup {
				t.Fatalf("partition %d assigned to %s and %s", p, prev, m)
			}
			seen[p] = m
		}
	}
	if len(seen) != partitions {
		t.Fatalf("%d of %d partitions assigned", len(seen), partitions)
	}
	// A fifth member takes partitions only from the others; nothing else
	// moves.
	five := append(slices.Clone(members), "e")
	for _, m := range members {
		before, after := lease.Assign(members, m, partitions), lease.Assign(five, m, partitions)
		for _, p := range after {
			if !slices.Contains(before, p) {
				t.Errorf("partition %d moved to %s when e joined", p, m)
			}
		}
	}
	if got := lease.Assign(members, "stranger", partitions); got != nil {
		t.Fatalf("a non-member got %v", got)
	}
}

func TestMemoryStoreContract(t *testing.T) {
	s := lease.NewMemoryStore()
	leasetest.Run(t, func(*testing.T) lease.Store { return s }, 200*time.Millisecond)
}

func redisClient(t testing.TB) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testservice.RequireRedis(t)})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func TestRedisStoreContract(t *testing.T) {
	s := lease.NewRedisStore(redisClient(t), fmt.Sprintf("leasetest-%d:", time.Now().UnixNano()))
	leasetest.Run(t, func(*testing.T) lease.Store { return s }, 300*time.Millisecond)
}

// ledger checks the one guarantee that matters: no two members work on a
// partition at once. Assigned fails the test if another member still
// works on it.
type ledger struct {
	mu      sync.Mutex
	working map[int]string
	errs    []error
}

func newLedger() *ledger { return &ledger{working: make(map[int]string)} }

func (l *ledger) handler(instance string) lease.Handler {
	return &ledgerHandler{l: l, instance: instance}
}

func (l *ledger) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, err := range l.errs {
		t.Error(err)
	}
}

type ledgerHandler struct {
	l        *ledger
	instance string
}

func (h *ledgerHandler) Assigned(p int, _ uint64) {
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	if w, ok := h.l.working[p]; ok {
		h.l.errs = append(h.l.errs, fmt.Errorf("partition %d assigned to %s while %s still works on it", p, h.instance, w))
	}
	h.l.working[p] = h.instance
}

func (h *ledgerHandler) Revoked(p int) {
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	if h.l.working[p] == h.instance {
		delete(h.l.working, p)
	}
}

func join(t *testing.T, store lease.Store, group, instance string, partitions int, l *ledger) *lease.Member {
	t.Helper()
	m, err := lease.Join(lease.Config{
		Store: store, Group: group, Instance: instance, Partitions: partitions,
		TTL: time.Second, RenewInterval: 100 * time.Millisecond, StopMargin: 300 * time.Millisecond,
	}, l.handler(instance))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// settled waits until the live members hold every partition exactly once
// and each holds what Assign gives it.
func settled(t *testing.T, ms []*lease.Member, partitions int) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		var names []string
		for _, m := range ms {
			names = append(names, m.Instance())
		}
		slices.Sort(names)
		ok := true
		for _, m := range ms {
			var held []int
			for _, l := range m.Leases() {
				held = append(held, l.Partition)
			}
			if !slices.Equal(held, lease.Assign(names, m.Instance(), partitions)) {
				ok = false
			}
		}
		if ok {
			return
		}
		select {
		case <-deadline:
			for _, m := range ms {
				t.Logf("%s holds %v, sees %v", m.Instance(), m.Leases(), m.Members())
			}
			t.Fatalf("members %v did not settle", names)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func eachStore(t *testing.T, f func(t *testing.T, store lease.Store)) {
	t.Run("memory", func(t *testing.T) { f(t, lease.NewMemoryStore()) })
	t.Run("redis", func(t *testing.T) {
		f(t, lease.NewRedisStore(redisClient(t), fmt.Sprintf("membertest-%d:", time.Now().UnixNano())))
	})
}

func TestMemberRebalance(t *testing.T) {
	eachStore(t, func(t *testing.T, store lease.Store) {
		const partitions = 12
		l := newLedger()
		a := join(t, store, "g", "a", partitions, l)
		settled(t, []*lease.Member{a}, partitions)
		b := join(t, store, "g", "b", partitions, l)
		settled(t, []*lease.Member{a, b}, partitions)
		c := join(t, store, "g", "c", partitions, l)
		settled(t, []*lease.Member{a, b, c}, partitions)
		// A graceful leave hands over at once.
		b.Close()
		settled(t, []*lease.Member{a, c}, partitions)
		l.check(t)
	})
}

// cutStore fails every call while cut is set: an instance cut off from
// the store.
type cutStore struct {
	lease.Store
	mu  sync.Mutex
	cut bool
}

var errCut = errors.New("cut off")

func (s *cutStore) isCut() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.cut }

func (s *cutStore) Heartbeat(ctx context.Context, r lease.HeartbeatRequest) (lease.Membership, error) {
	if s.isCut() {
		return lease.Membership{}, errCut
	}
	return s.Store.Heartbeat(ctx, r)
}

func (s *cutStore) Acquire(ctx context.Context, r lease.AcquireRequest) ([]lease.Grant, error) {
	if s.isCut() {
		return nil, errCut
	}
	return s.Store.Acquire(ctx, r)
}

func (s *cutStore) Release(ctx context.Context, g, i string, ps []int) error {
	if s.isCut() {
		return errCut
	}
	return s.Store.Release(ctx, g, i, ps)
}

func (s *cutStore) Leave(ctx context.Context, g, i string) error {
	if s.isCut() {
		return errCut
	}
	return s.Store.Leave(ctx, g, i)
}

// A member cut off from the store stops working on its partitions before
// their leases end; the others take them over after that.
func TestMemberCrashTakeover(t *testing.T) {
	eachStore(t, func(t *testing.T, store lease.Store) {
		const partitions = 8
		l := newLedger()
		cs := &cutStore{Store: store}
		a := join(t, cs, "g", "a", partitions, l)
		b := join(t, store, "g", "b", partitions, l)
		settled(t, []*lease.Member{a, b}, partitions)
		cs.mu.Lock()
		cs.cut = true
		cs.mu.Unlock()
		// a stops by itself at its deadlines...
		deadline := time.After(10 * time.Second)
		for len(a.Leases()) > 0 {
			select {
			case <-a.Changed():
			case <-deadline:
				t.Fatalf("a still holds %v while cut off", a.Leases())
			}
		}
		// ...and b ends up with everything, a never overlapping.
		settled(t, []*lease.Member{b}, partitions)
		l.check(t)
		// a's tokens are no longer valid.
		for _, ls := range b.Leases() {
			if a.Valid(ls.Partition, ls.Token) {
				t.Fatalf("a counts b's lease on %d valid", ls.Partition)
			}
		}
	})
}

func TestMemberPartitionCountMismatch(t *testing.T) {
	store := lease.NewMemoryStore()
	l := newLedger()
	a := join(t, store, "g", "a", 8, l)
	settled(t, []*lease.Member{a}, 8)
	b, err := lease.Join(lease.Config{Store: store, Group: "g", Instance: "b", Partitions: 16, TTL: time.Second}, l.handler("b"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	select {
	case <-b.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("b with the wrong count still runs")
	}
	var pc *lease.PartitionCountError
	if !errors.As(b.Err(), &pc) || pc.Have != 8 || pc.Want != 16 {
		t.Fatalf("b.Err() = %v", b.Err())
	}
}

func TestConfigValidate(t *testing.T) {
	err := lease.Config{Group: "bad name", Partitions: 0, TTL: time.Second, RenewInterval: time.Second}.Validate()
	for _, want := range []string{"Store is required", "group name", "Partitions is 0", "at most half the TTL"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v; want it to mention %q", err, want)
		}
	}
}
