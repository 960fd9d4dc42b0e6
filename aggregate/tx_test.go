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

// bankOf returns an account type whose entities all share one partition
// key, so that transfers between them are atomic.
func bankOf(key uuid.UUID) *aggregate.Type[Account, string] {
	return accountType(aggregate.WithPartitionKey[Account, string](func(string) uuid.UUID { return key }))
}

func transfer(from, to string, amount uint32, typ *aggregate.Type[Account, string]) func(ctx context.Context, tx *aggregate.Tx) error {
	return func(ctx context.Context, tx *aggregate.Tx) error {
		accts := aggregate.In(tx, typ)
		if _, err := accts.Execute(ctx, from, Withdraw{Amount: amount}); err != nil {
			return err
		}
		_, err := accts.Execute(ctx, to, Deposit{Amount: amount})
		return err
	}
}

func TestTransactionCommitsAtomically(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		ctx := ctxT(t)
		c := newClient(t, addr)
		x := newExec(t, c, aggregate.Config{})
		key := uuid.New()
		typ := bankOf(key)
		accts := aggregate.Bind(x, typ)
		a, b := newID("a"), newID("b")
		if _, err := accts.Execute(ctx, a, Deposit{Amount: 100}); err != nil {
			t.Fatal(err)
		}
		res, err := x.Transaction(ctx, key, transfer(a, b, 60, typ))
		if err != nil || !res.Committed || len(res.Results) != 2 {
			t.Fatalf("transfer: %+v %v", res, err)
		}
		w, d := res.Results[0].Events[0], res.Results[1].Events[0]
		if w.PartitionSequence+1 != d.PartitionSequence || w.Version != 1 || d.Version != 0 {
			t.Fatalf("positions %+v %+v", w, d)
		}
		// One transaction on the server.
		waitVersion(t, c, "bank_account-"+b, 0, sierradb.WithPartitionKey(key))
		ev, err := c.Get(ctx, w.ID)
		ev2, err2 := c.Get(ctx, d.ID)
		if err != nil || err2 != nil || ev.TransactionID != ev2.TransactionID {
			t.Fatalf("two transactions: %v %v %v", ev.TransactionID, ev2.TransactionID, errors.Join(err, err2))
		}
		sa, _, _ := accts.Load(ctx, a)
		sb, _, _ := accts.Load(ctx, b)
		if sa.Balance != 40 || sb.Balance != 60 {
			t.Fatalf("balances %d %d", sa.Balance, sb.Balance)
		}
		// A failing second command writes nothing, and the first entity's
		// state is as before.
		_, err = x.Transaction(ctx, key, txFunc(transfer(a, b, 10, typ)).then(func(ctx context.Context, tx *aggregate.Tx) error {
			_, err := aggregate.In(tx, typ).Execute(ctx, b, Withdraw{Amount: 1000})
			return err
		}))
		if !errors.Is(err, ErrInsufficientFunds) {
			t.Fatalf("failing transaction: %v", err)
		}
		sa, va, _ := accts.Load(ctx, a)
		if sa.Balance != 40 || va != 1 {
			t.Fatalf("after a failed transaction a has %d at %d", sa.Balance, va)
		}
	})
}

// then chains two closures.
type txFunc func(ctx context.Context, tx *aggregate.Tx) error

func (f txFunc) then(g txFunc) txFunc {
	return func(ctx context.Context, tx *aggregate.Tx) error {
		if err := f(ctx, tx); err != nil {
			return err
		}
		return g(ctx, tx)
	}
}

func TestTransactionAbortDryRunAndReadYourWrites(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		ctx := ctxT(t)
		x := newExec(t, newClient(t, addr), aggregate.Config{})
		key := uuid.New()
		typ := bankOf(key)
		a := newID("a")
		// Read your writes: the withdrawal sees the deposit before it.
		res, err := x.Transaction(ctx, key, func(ctx context.Context, tx *aggregate.Tx) error {
			accts := aggregate.In(tx, typ)
			if _, err := accts.Execute(ctx, a, Deposit{Amount: 30}); err != nil {
				return err
			}
			if _, err := accts.Execute(ctx, a, Withdraw{Amount: 25}); err != nil {
				return err
			}
			s, v, err := accts.Load(ctx, a)
			if err != nil || s.Balance != 5 || v != 1 {
				t.Errorf("inside: %+v v%d %v", s, v, err)
			}
			return nil
		})
		if err != nil || !res.Committed {
			t.Fatalf("%+v %v", res, err)
		}
		// Abort with a value.
		res, err = x.Transaction(ctx, key, func(ctx context.Context, tx *aggregate.Tx) error {
			aggregate.In(tx, typ).Execute(ctx, a, Deposit{Amount: 1000})
			return tx.Abort("changed my mind")
		})
		if err != nil || !res.Aborted || res.AbortValue != "changed my mind" || res.Committed {
			t.Fatalf("abort: %+v %v", res, err)
		}
		// Dry run.
		res, err = x.Transaction(ctx, key, func(ctx context.Context, tx *aggregate.Tx) error {
			_, err := aggregate.In(tx, typ).Execute(ctx, a, Deposit{Amount: 7})
			return err
		}, aggregate.TxDryRun())
		if err != nil || !res.DryRun || res.Committed || len(res.Results) != 1 || res.Results[0].Events[0].Version != 2 {
			t.Fatalf("dry run: %+v %v", res, err)
		}
		s, v, _ := aggregate.Bind(x, typ).Load(ctx, a)
		if s.Balance != 5 || v != 1 {
			t.Fatalf("abort or dry run wrote: %d at %d", s.Balance, v)
		}
	})
}

func TestTransactionPartitionKeyIsExplicit(t *testing.T) {
	srv := testservice.SierraTargets()[0].Addr(t)
	x := newExec(t, newClient(t, srv), aggregate.Config{})
	ctx := ctxT(t)
	plain := accountType() // default key: one per stream
	_, err := x.Transaction(ctx, uuid.New(), func(ctx context.Context, tx *aggregate.Tx) error {
		_, err := aggregate.In(tx, plain).Execute(ctx, "x", Deposit{Amount: 1})
		return err
	})
	var pk *aggregate.PartitionKeyError
	if !errors.As(err, &pk) || !errors.Is(err, aggregate.ErrPartitionKeyMismatch) {
		t.Fatalf("entity outside the transaction's partition: %v", err)
	}
}

// A concurrent write between the transaction's reads and its commit makes
// the closure run again against fresh state.
func TestTransactionRetriesOnConflict(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		ctx := ctxT(t)
		key := uuid.New()
		typ := bankOf(key)
		x := newExec(t, newClient(t, addr), aggregate.Config{})
		other := aggregate.Bind(newExec(t, newClient(t, addr), aggregate.Config{}), typ)
		a, b := newID("a"), newID("b")
		if _, err := aggregate.Bind(x, typ).Execute(ctx, a, Deposit{Amount: 100}); err != nil {
			t.Fatal(err)
		}
		runs := 0
		res, err := x.Transaction(ctx, key, func(ctx context.Context, tx *aggregate.Tx) error {
			runs++
			if err := transfer(a, b, 10, typ)(ctx, tx); err != nil {
				return err
			}
			if runs == 1 {
				// Another process deposits to a meanwhile.
				if _, err := other.Execute(ctx, a, Deposit{Amount: 5}); err != nil {
					t.Error(err)
				}
			}
			return nil
		})
		if err != nil || !res.Committed || runs < 2 || res.Attempts != runs {
			t.Fatalf("%+v after %d runs: %v", res, runs, err)
		}
		s, _, err := aggregate.Bind(x, typ).Load(ctx, a)
		if err != nil || s.Balance != 95 {
			t.Fatalf("a has %d (%v), want 100+5-10", s.Balance, err)
		}
	})
}

// Two transactions locking the same entities in opposite order both
// finish: the younger yields to the older.
func TestTransactionsInOppositeOrderBothFinish(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		ctx := ctxT(t)
		key := uuid.New()
		typ := bankOf(key)
		x := newExec(t, newClient(t, addr), aggregate.Config{})
		a, b := newID("a"), newID("b")
		accts := aggregate.Bind(x, typ)
		accts.Execute(ctx, a, Deposit{Amount: 100})
		accts.Execute(ctx, b, Deposit{Amount: 100})
		for round := range 5 {
			var ready sync.WaitGroup
			ready.Add(2)
			var wg sync.WaitGroup
			errs := make([]error, 2)
			run := func(i int, first, second string) {
				defer wg.Done()
				once := false
				_, errs[i] = x.Transaction(ctx, key, func(ctx context.Context, tx *aggregate.Tx) error {
					accts := aggregate.In(tx, typ)
					if _, err := accts.Execute(ctx, first, Withdraw{Amount: 1}); err != nil {
						return err
					}
					if !once {
						// Both hold their first entity before asking
						// for the second.
						once = true
						ready.Done()
						ready.Wait()
					}
					_, err := accts.Execute(ctx, second, Deposit{Amount: 1})
					return err
				}, aggregate.TxLockTimeout(10*time.Second))
			}
			wg.Add(2)
			start := time.Now()
			go run(0, a, b)
			go run(1, b, a)
			wg.Wait()
			if errs[0] != nil || errs[1] != nil {
				t.Fatalf("round %d: %v / %v", round, errs[0], errs[1])
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("round %d took %s: they waited for each other", round, d)
			}
		}
		sa, va, _ := accts.Load(ctx, a)
		sb, vb, _ := accts.Load(ctx, b)
		if sa.Balance != 100 || sb.Balance != 100 || va != 10 || vb != 10 {
			t.Fatalf("a %d@%d, b %d@%d", sa.Balance, va, sb.Balance, vb)
		}
	})
}

// An abandoned transaction (an error, a cancelled context, a command
// issued outside it for an entity it holds) releases its entities.
func TestTransactionReleasesEntities(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		ctx := ctxT(t)
		key := uuid.New()
		typ := bankOf(key)
		x := newExec(t, newClient(t, addr), aggregate.Config{LockTimeout: 300 * time.Millisecond})
		accts := aggregate.Bind(x, typ)
		a := newID("a")
		// A plain command from inside the closure for an entity the
		// transaction holds fails within the lock timeout, not forever.
		start := time.Now()
		_, err := x.Transaction(ctx, key, func(ctx context.Context, tx *aggregate.Tx) error {
			if _, err := aggregate.In(tx, typ).Execute(ctx, a, Deposit{Amount: 1}); err != nil {
				return err
			}
			_, err := accts.Execute(ctx, a, Deposit{Amount: 1})
			return err
		})
		if !errors.Is(err, aggregate.ErrLockTimeout) || time.Since(start) > 3*time.Second {
			t.Fatalf("nested plain command: %v after %s", err, time.Since(start))
		}
		// A cancelled context inside the closure.
		cctx, cancel := context.WithCancel(ctx)
		_, err = x.Transaction(cctx, key, func(ctx context.Context, tx *aggregate.Tx) error {
			aggregate.In(tx, typ).Execute(ctx, a, Deposit{Amount: 1})
			cancel()
			return ctx.Err()
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled: %v", err)
		}
		// The entity is free and unchanged.
		done := make(chan error, 1)
		go func() { _, err := accts.Execute(ctx, a, Deposit{Amount: 5}); done <- err }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("the entity is still locked")
		}
		if s, v, _ := accts.Load(ctx, a); s.Balance != 5 || v != 0 {
			t.Fatalf("a has %d at %d: an abandoned transaction wrote", s.Balance, v)
		}
	})
}
