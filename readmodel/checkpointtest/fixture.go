package checkpointtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/sierradbtest"
)

// The entity type of the runner tests.
type account struct{ Balance int64 }

// Deposited is an event of the runner tests.
type Deposited struct {
	Amount int64 `cbor:"amount" json:"amount"`
}

func (Deposited) EventName() string { return "Deposited" }

// Withdrawn is an event of the runner tests.
type Withdrawn struct {
	Amount int64 `cbor:"amount" json:"amount"`
}

func (Withdrawn) EventName() string { return "Withdrawn" }

// Renamed is registered but has no handler: skipped.
type Renamed struct {
	Name string `cbor:"name" json:"name"`
}

func (Renamed) EventName() string { return "Renamed" }

// fixture is a SierraDB with events of a category unique to one test, and
// the read model they should give.
type fixture[T any] struct {
	s        *suite[T]
	client   *sierradb.Client
	typ      *aggregate.Type[account, string]
	versions map[string]int64
	appended map[uint16]uint64 // the last appended sequence per partition
	ref      map[string]int64
	n        int
	failed   sync.Map // event id -> failures so far (failsTwice)
	attempts atomic.Int64
	// fixed makes the handler of the fixable deposits succeed.
	fixed atomic.Bool
}

func (s *suite[T]) fixture(t *testing.T) *fixture[T] {
	t.Helper()
	client, err := sierradb.New(sierradb.Config{Addr: s.h.SierraAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	var b [4]byte
	rand.Read(b[:])
	typ := aggregate.MustDefine[account, string]("ctacct"+hex.EncodeToString(b[:]),
		aggregate.On(func(a *account, e Deposited) { a.Balance += e.Amount }),
		aggregate.On(func(a *account, e Withdrawn) { a.Balance -= e.Amount }),
		aggregate.On(func(a *account, e Renamed) {}),
	)
	return &fixture[T]{s: s, client: client, typ: typ, versions: make(map[string]int64),
		appended: make(map[uint16]uint64), ref: make(map[string]int64)}
}

func (f *fixture[T]) handlers() []readmodel.Handler[T] {
	add := f.s.h.Add
	return []readmodel.Handler[T]{
		readmodel.On(f.typ, func(ctx context.Context, tx T, id string, e Deposited, m readmodel.Meta) error {
			f.attempts.Add(1)
			switch e.Amount {
			case alwaysFails:
				return errors.New("checkpointtest: this deposit always fails")
			case failsTwice:
				n, _ := f.failed.LoadOrStore(m.EventID, new(atomic.Int64))
				if n.(*atomic.Int64).Add(1) <= 2 {
					return errors.New("checkpointtest: a passing failure")
				}
			case fixable:
				if !f.fixed.Load() {
					return errors.New("checkpointtest: a bug, until the handler is fixed")
				}
			}
			if err := add(ctx, tx, m.Projection, "bal/"+id, e.Amount); err != nil {
				return err
			}
			return add(ctx, tx, m.Projection, "n/"+id, 1)
		}),
		readmodel.On(f.typ, func(ctx context.Context, tx T, id string, e Withdrawn, m readmodel.Meta) error {
			if err := add(ctx, tx, m.Projection, "bal/"+id, -e.Amount); err != nil {
				return err
			}
			return add(ctx, tx, m.Projection, "n/"+id, 1)
		}),
	}
}

type newEvent struct {
	stream string
	name   string
	ev     aggregate.Event // nil: payload is raw
	raw    []byte
}

// append stores events, grouped per stream, and updates the reference.
func (f *fixture[T]) append(t testing.TB, evs []newEvent) {
	t.Helper()
	ctx := ctxT(t)
	byStream := make(map[string][]sierradb.NewEvent)
	var order []string
	for _, e := range evs {
		name, payload := e.name, e.raw
		if e.ev != nil {
			var err error
			name, payload, err = f.typ.EncodeEvent(e.ev)
			if err != nil {
				t.Fatal(err)
			}
		}
		if _, ok := byStream[e.stream]; !ok {
			order = append(order, e.stream)
		}
		byStream[e.stream] = append(byStream[e.stream], sierradb.NewEvent{StreamID: e.stream, Name: name, Payload: payload})
	}
	for _, stream := range order {
		list := byStream[stream]
		v, ok := f.versions[stream]
		if !ok {
			v = -1
		}
		v, err := sierradbtest.AppendChunks(ctx, f.client, stream, v, list, 50, func(res sierradb.MultiAppendResult) {
			f.appended[res.PartitionID] = max(f.appended[res.PartitionID], res.LastPartitionSequence)
		})
		if err != nil {
			t.Fatalf("append to %s: %v", stream, err)
		}
		f.versions[stream] = v
	}
}

// generate makes n ordinary events over 17 accounts, with events the
// projection must skip in between, and adds them to the reference.
func (f *fixture[T]) generate(n int) []newEvent {
	cat := f.typ.Category()
	var evs []newEvent
	for range n {
		i := f.n
		f.n++
		id := fmt.Sprintf("a%d", i%17)
		stream := cat + "-" + id
		amount := int64(i%13 + 1)
		switch {
		case i%7 == 3:
			evs = append(evs, newEvent{stream: stream, ev: Withdrawn{Amount: amount}})
			f.ref["bal/"+id] -= amount
			f.ref["n/"+id]++
		case i%11 == 5:
			evs = append(evs, newEvent{stream: stream, ev: Renamed{Name: "x"}})
		case i%19 == 7:
			// Another category, and this category's snapshot stream:
			// both skipped.
			evs = append(evs, newEvent{stream: "ctother" + strings.TrimPrefix(cat, "ctacct") + "-" + id, name: "Deposited", raw: []byte{0xff}})
			evs = append(evs, newEvent{stream: cat + ":snapshot-" + id, name: "Deposited", raw: []byte{0xff}})
		default:
			evs = append(evs, newEvent{stream: stream, ev: Deposited{Amount: amount}})
			f.ref["bal/"+id] += amount
			f.ref["n/"+id]++
		}
	}
	return evs
}

func (f *fixture[T]) runner(t testing.TB, st readmodel.Store[T], name string, mod ...func(*readmodel.Config[T])) *readmodel.Runner[T] {
	t.Helper()
	cfg := readmodel.Config[T]{
		Name: name, Client: f.client, Store: st, Handlers: f.handlers(),
		BatchSize: 64, BatchTimeout: 5 * time.Millisecond, MaxAttempts: 3,
		RetryBackoff: time.Millisecond, MaxRetryBackoff: 10 * time.Millisecond, LagInterval: 10 * time.Millisecond,
	}
	for _, m := range mod {
		m(&cfg)
	}
	r, err := readmodel.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// sync waits until r has applied every event appended so far (by
// position, since SierraDB makes appends visible to EPSEQ asynchronously),
// and then everything EPSEQ shows.
func (f *fixture[T]) sync(t testing.TB, r *readmodel.Runner[T]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var pos []readmodel.Position
	for p, s := range f.appended {
		pos = append(pos, readmodel.Position{Partition: p, Sequence: s})
	}
	if err := r.WaitFor(ctx, pos...); err != nil {
		t.Fatalf("WaitFor %s: %v (status %+v)", r.Name(), err, r.Status())
	}
	if err := r.Sync(ctx); err != nil {
		t.Fatalf("Sync %s: %v (status %+v)", r.Name(), err, r.Status())
	}
}

// check compares the projection's read model with the reference.
func (f *fixture[T]) check(t testing.TB, st readmodel.Store[T], proj string) {
	t.Helper()
	keys := slices.Sorted(maps.Keys(f.ref))
	for _, k := range keys {
		f.s.wantValue(t, st, proj, k, f.ref[k])
	}
}

func (f *fixture[T]) heads(t testing.TB) map[uint16]int64 {
	t.Helper()
	count, err := f.client.PartitionCount(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	parts := make([]uint16, count)
	for i := range parts {
		parts[i] = uint16(i)
	}
	h, err := f.client.PartitionSequences(ctxT(t), parts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
