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

// Amounts with a meaning for the handlers.
const (
	alwaysFails = 1313 // the handler always fails: parked
	failsTwice  = 4242 // the handler fails twice, then succeeds
)

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
		for len(list) > 0 {
			chunk := list[:min(len(list), 50)]
			list = list[len(chunk):]
			for i := range chunk {
				chunk[i].ExpectedVersion = sierradb.ExpectAfter(v)
				v++
			}
			res, err := f.client.AppendMulti(ctx, sierradb.StreamPartitionKey(stream), chunk)
			if err != nil {
				t.Fatalf("append to %s: %v", stream, err)
			}
			f.appended[res.PartitionID] = max(f.appended[res.PartitionID], res.LastPartitionSequence)
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

func (s *suite[T]) runner(t *testing.T) {
	f := s.fixture(t)
	st := s.h.New(t)
	f.append(t, f.generate(s.h.Events/2))

	r := f.runner(t, st, "proj")
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	f.sync(t, r)
	select {
	case <-r.Live():
	case <-time.After(time.Minute):
		t.Fatalf("not live after Sync: %+v", r.Status())
	}
	f.check(t, st, "proj")
	wait(t, "zero lag", 30*time.Second, func() bool {
		st := r.Status()
		return st.State == readmodel.Live && st.Lag == 0 && st.Handled > 0
	})
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := r.Status().State; got != readmodel.Stopped {
		t.Fatalf("state after Close = %v", got)
	}

	// New events while it is down; a new runner (over a reopened store
	// when the store is durable) resumes from the checkpoints.
	f.append(t, f.generate(s.h.Events/2))
	if s.h.Reopen != nil {
		st = s.h.Reopen(t, st)
	}
	r2 := f.runner(t, st, "proj")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r2.Run(ctx) }()
	f.sync(t, r2)
	// Live events, applied as they arrive.
	f.append(t, f.generate(20))
	f.sync(t, r2)
	f.check(t, st, "proj")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	if err := r2.Run(context.Background()); !errors.Is(err, readmodel.ErrRunning) {
		t.Fatalf("second Run = %v, want ErrRunning", err)
	}
	cps, err := st.Checkpoints(ctxT(t), "proj")
	if err != nil {
		t.Fatal(err)
	}
	for p, seq := range f.appended {
		if c, ok := cps[p]; !ok || c < seq {
			t.Fatalf("checkpoint of partition %d = %d (present %v), below the appended %d", p, c, ok, seq)
		}
	}
	if parked, err := st.Parked(ctxT(t), "proj"); err != nil || len(parked) != 0 {
		t.Fatalf("Parked = %v, %v; skipped events must not be parked", parked, err)
	}
}

func (s *suite[T]) runnerPoison(t *testing.T) {
	f := s.fixture(t)
	st := s.h.New(t)
	cat := f.typ.Category()
	evs := f.generate(s.h.Events / 4)
	evs = append(evs,
		newEvent{stream: cat + "-bad", name: "Deposited", raw: []byte{0xff, 0xfe}},
		newEvent{stream: cat + "-fails", ev: Deposited{Amount: alwaysFails}},
		newEvent{stream: cat + "-mystery", name: "Mystery", raw: nil},
		newEvent{stream: cat + "-flaky", ev: Deposited{Amount: failsTwice}},
	)
	f.ref["bal/flaky"] += failsTwice
	f.ref["n/flaky"]++
	evs = append(evs, f.generate(s.h.Events/4)...)
	f.append(t, evs)

	r := f.runner(t, st, "poison", func(c *readmodel.Config[T]) { c.UnknownEvents = readmodel.PoisonUnknown })
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	f.sync(t, r)
	f.check(t, st, "poison")
	f.s.wantValue(t, st, "poison", "bal/fails", 0)
	parked, err := st.Parked(ctxT(t), "poison")
	if err != nil {
		t.Fatal(err)
	}
	causes := make(map[string]readmodel.Cause)
	for _, p := range parked {
		causes[p.StreamID] = p.Cause
		if p.Reason == "" {
			t.Errorf("parked %s without a reason", p.StreamID)
		}
	}
	want := map[string]readmodel.Cause{cat + "-bad": readmodel.CauseDecode, cat + "-fails": readmodel.CauseHandler, cat + "-mystery": readmodel.CauseUnknown}
	if !maps.Equal(causes, want) {
		t.Fatalf("parked = %v, want %v", causes, want)
	}
	if st := r.Status(); st.Parked != 3 {
		t.Fatalf("Status.Parked = %d, want 3", st.Parked)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

func (s *suite[T]) runnerPoisonStop(t *testing.T) {
	f := s.fixture(t)
	st := s.h.New(t)
	cat := f.typ.Category()
	f.append(t, f.generate(s.h.Events/4))
	f.append(t, []newEvent{{stream: cat + "-bad", name: "Deposited", raw: []byte{0xff}}})
	r := f.runner(t, st, "stop", func(c *readmodel.Config[T]) { c.OnPoison = readmodel.Stop })
	err := r.Run(ctxT(t))
	var pe *readmodel.PoisonError
	if !errors.Is(err, readmodel.ErrPoison) || !errors.As(err, &pe) {
		t.Fatalf("Run = %v, want a *PoisonError", err)
	}
	if pe.Event.StreamID != cat+"-bad" || pe.Event.Cause != readmodel.CauseDecode {
		t.Fatalf("poison event = %+v", pe.Event)
	}
	cps, err := st.Checkpoints(ctxT(t), "stop")
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := cps[pe.Event.Partition]; ok && s >= pe.Event.Sequence {
		t.Fatalf("checkpoint %d passed the poison event at %d", s, pe.Event.Sequence)
	}
	if parked, _ := st.Parked(ctxT(t), "stop"); len(parked) != 0 {
		t.Fatalf("Stop parked %v", parked)
	}
	if !errors.Is(r.Err(), readmodel.ErrPoison) {
		t.Fatalf("Err = %v", r.Err())
	}
	// The next run meets it again.
	r2 := f.runner(t, st, "stop", func(c *readmodel.Config[T]) { c.OnPoison = readmodel.Stop })
	if err := r2.Run(ctxT(t)); !errors.Is(err, readmodel.ErrPoison) {
		t.Fatalf("second Run = %v, want ErrPoison", err)
	}
}

// twoRunners runs two runners of one projection at once: whatever they
// commit, no event is applied twice, and a third runner completes the
// projection.
func (s *suite[T]) twoRunners(t *testing.T) {
	f := s.fixture(t)
	st := s.h.New(t)
	f.append(t, f.generate(s.h.Events))
	small := func(c *readmodel.Config[T]) { c.BatchSize = 16; c.BatchTimeout = time.Millisecond }
	a, b := f.runner(t, st, "twice", small), f.runner(t, st, "twice", small)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	heads := f.heads(t)
	for p, s := range f.appended {
		heads[p] = max(heads[p], int64(s))
	}
	wait(t, "the runners to finish", time.Minute, func() bool {
		select {
		case <-a.Done():
			select {
			case <-b.Done():
				return true
			default:
			}
		default:
		}
		cps, err := st.Checkpoints(ctxT(t), "twice")
		if err != nil {
			t.Fatal(err)
		}
		for p, h := range heads {
			if h >= 0 && int64(cps[p]) < h {
				return false
			}
		}
		return true
	})
	for _, r := range []*readmodel.Runner[T]{a, b} {
		if err := r.Close(); err != nil && !errors.Is(err, readmodel.ErrCheckpointConflict) {
			t.Fatalf("runner ended with %v, want nil or ErrCheckpointConflict", err)
		}
	}
	c := f.runner(t, st, "twice")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	f.sync(t, c)
	f.check(t, st, "twice")
}

func (s *suite[T]) rebuild(t *testing.T) {
	f := s.fixture(t)
	st := s.h.New(t)
	ctx := ctxT(t)
	f.append(t, f.generate(s.h.Events/2))
	v1 := f.runner(t, st, "bal@v1")
	if err := v1.Start(); err != nil {
		t.Fatal(err)
	}
	f.sync(t, v1)
	f.check(t, st, "bal@v1")
	sw, canSwitch := st.(readmodel.Switcher)
	if canSwitch {
		if err := sw.SetActive(ctx, "bal", "bal@v1"); err != nil {
			t.Fatal(err)
		}
	}

	// Blue/green: v2 builds beside v1, which keeps serving and applying.
	v2 := f.runner(t, st, "bal@v2")
	if err := v2.Start(); err != nil {
		t.Fatal(err)
	}
	f.append(t, f.generate(s.h.Events/4))
	f.sync(t, v2)
	if canSwitch {
		if err := readmodel.SwitchWhenCaughtUp(ctx, v2, sw, "bal"); err != nil {
			t.Fatal(err)
		}
		if got, err := sw.Active(ctx, "bal"); err != nil || got != "bal@v2" {
			t.Fatalf("Active = %q, %v; want bal@v2", got, err)
		}
	}
	f.sync(t, v1)
	f.check(t, st, "bal@v2")
	f.check(t, st, "bal@v1")

	// Reset v1 and replay it from the start.
	if err := v1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Reset(ctx, "bal@v1", s.dropFunc("bal@v1")); err != nil {
		t.Fatal(err)
	}
	s.wantCheckpoints(t, st, "bal@v1", nil)
	for k := range f.ref {
		if f.ref[k] != 0 {
			s.wantValue(t, st, "bal@v1", k, 0)
			break
		}
	}
	again := f.runner(t, st, "bal@v1")
	if err := again.Start(); err != nil {
		t.Fatal(err)
	}
	f.sync(t, again)
	f.check(t, st, "bal@v1")
	f.check(t, st, "bal@v2")
}
