package aggregate_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
)

// gatedStore is a real client whose next append, once armed, waits until
// the test releases it, and which records the size and outcome of every
// append: the test can queue commands behind an append in flight and see
// what was sent.
type gatedStore struct {
	*sierradb.Client
	mu      sync.Mutex
	armed   bool
	entered chan struct{}
	release chan struct{}
	calls   []appendCall
}

type appendCall struct {
	events int
	err    error
}

func (s *gatedStore) arm() {
	s.mu.Lock()
	s.armed = true
	s.entered, s.release = make(chan struct{}), make(chan struct{})
	s.mu.Unlock()
}

func (s *gatedStore) AppendMulti(ctx context.Context, key uuid.UUID, events []sierradb.NewEvent) (sierradb.MultiAppendResult, error) {
	s.mu.Lock()
	gated := s.armed
	s.armed = false
	entered, release := s.entered, s.release
	s.mu.Unlock()
	if gated {
		close(entered)
		<-release
	}
	res, err := s.Client.AppendMulti(ctx, key, events)
	s.mu.Lock()
	s.calls = append(s.calls, appendCall{len(events), err})
	s.mu.Unlock()
	return res, err
}

func (s *gatedStore) takeCalls() []appendCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = nil
	return c
}

type outcome struct {
	res aggregate.Result
	err error
}

// groupRound runs Deposit{amount} on every entity of ids at once, behind
// an append of pilot held in the store, and returns each command's
// outcome once the held append is released (after all of them queued).
func groupRound(t *testing.T, ctx context.Context, x *aggregate.Executor, s *gatedStore, accts *aggregate.Entities[Account, string], key uuid.UUID, pilot string, ids []string, amount uint32) []outcome {
	t.Helper()
	s.arm()
	var wg sync.WaitGroup
	var pilotErr error
	wg.Go(func() { _, pilotErr = accts.Execute(ctx, pilot, Deposit{Amount: 1}) })
	<-s.entered
	out := make([]outcome, len(ids))
	for i, id := range ids {
		wg.Go(func() {
			res, err := accts.Execute(ctx, id, Deposit{Amount: amount})
			out[i] = outcome{res, err}
		})
	}
	for aggregate.GroupQueued(x, key) < len(ids) {
		select {
		case <-ctx.Done():
			close(s.release)
			wg.Wait()
			t.Fatalf("only %d of %d commands queued", aggregate.GroupQueued(x, key), len(ids))
		case <-time.After(time.Millisecond):
		}
	}
	close(s.release)
	wg.Wait()
	if pilotErr != nil {
		t.Fatalf("pilot: %v", pilotErr)
	}
	return out
}

// TestGroupCommitConflictIsolated: commands on entities that share a
// partition key are joined into one append; when one of them conflicts,
// the others' outcomes are exactly as if each had run alone, and the
// conflicting one gets its own conflict.
func TestGroupCommitConflictIsolated(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		ctx := ctxT(t)
		c := newClient(t, addr)
		s := &gatedStore{Client: c}
		// No retries: a conflict is the command's outcome, visible as is.
		x := newExec(t, s, aggregate.Config{MaxConflictRetries: -1})
		key := uuid.New()
		typ := accountType(aggregate.WithPartitionKey[Account, string](func(string) uuid.UUID { return key }),
			aggregate.WithGroupCommit[Account]())
		accts := aggregate.Bind(x, typ)
		const n = 6
		pilot := newID("p")
		ids := make([]string, n)
		for i := range ids {
			ids[i] = newID("g")
		}
		for _, id := range append([]string{pilot}, ids...) {
			if _, err := accts.Execute(ctx, id, Deposit{Amount: 100}); err != nil {
				t.Fatal(err)
			}
		}
		s.takeCalls()

		// Round 1, no conflict: one joined append carries all n.
		out := groupRound(t, ctx, x, s, accts, key, pilot, ids, 10)
		calls := s.takeCalls()
		if len(calls) != 2 || calls[1].events != n || calls[1].err != nil {
			t.Fatalf("round 1 appends (pilot, then the group): %+v", calls)
		}
		var tx uuid.UUID
		for i, o := range out {
			if o.err != nil || len(o.res.Events) != 1 || o.res.Version != 1 || o.res.Events[0].Version != 1 {
				t.Fatalf("round 1 command %d: %+v %v", i, o.res, o.err)
			}
			ev, err := c.Get(ctx, o.res.Events[0].ID)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				tx = ev.TransactionID
			} else if ev.TransactionID != tx {
				t.Fatalf("round 1 command %d in transaction %v, command 0 in %v", i, ev.TransactionID, tx)
			}
		}

		// Round 2: another writer moves ids[0], whose cached state is now
		// stale; its append conflicts, and the joined append with it.
		other := aggregate.Bind(newExec(t, c, aggregate.Config{}), typ)
		if _, err := other.Execute(ctx, ids[0], Deposit{Amount: 1}); err != nil {
			t.Fatal(err)
		}
		out = groupRound(t, ctx, x, s, accts, key, pilot, ids, 20)
		calls = s.takeCalls()
		t.Logf("%s: round 2 appends: %+v", tg.Name, calls)
		if len(calls) != 2+n || calls[1].events != n || !errors.Is(calls[1].err, sierradb.ErrWrongExpectedVersion) {
			t.Fatalf("round 2 appends (pilot, the joined one failing, then each alone): %+v", calls)
		}
		var ce *aggregate.ConflictError
		if !errors.As(out[0].err, &ce) || !errors.Is(ce.Last, sierradb.ErrWrongExpectedVersion) {
			t.Fatalf("stale command: %+v %v, want its own conflict", out[0].res, out[0].err)
		}
		for i, o := range out[1:] {
			if o.err != nil || len(o.res.Events) != 1 || o.res.Version != 2 {
				t.Fatalf("round 2 command %d saw another's failure: %+v %v", i+1, o.res, o.err)
			}
		}
		// The stored streams say the same: each as if run alone.
		fresh := aggregate.Bind(newExec(t, c, aggregate.Config{}), typ)
		for i, id := range ids {
			want, wantV := int64(130), int64(2)
			if i == 0 {
				want = 111
			}
			waitVersion(t, c, "bank_account-"+id, wantV, sierradb.WithPartitionKey(key))
			st, v, err := fresh.Load(ctx, id)
			if err != nil || st.Balance != want || v != wantV {
				t.Fatalf("%s: balance %d at %d (%v), want %d at %d", id, st.Balance, v, err, want, wantV)
			}
		}
		// The stale entity, reloaded, runs its command again alone.
		if res, err := accts.Execute(ctx, ids[0], Deposit{Amount: 20}); err != nil || res.Version != 3 {
			t.Fatalf("after the conflict: %+v %v", res, err)
		}
	})
}
