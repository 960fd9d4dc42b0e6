package aggregate_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

// After a conflict the executor waits until it sees the version the server
// reported, but no longer than Config.VisibilityTimeout: a server that
// reports a version it never shows (injected here: the embedded server
// answers the append with a WRONGVER naming version 50) makes Execute fail
// with "not visible" once the timeout has passed, instead of waiting for
// the caller's context.
func TestConflictWaitBoundedByVisibilityTimeout(t *testing.T) {
	srv := embedded.RunT(t)
	const visibility = 200 * time.Millisecond
	x := newExec(t, newClient(t, srv.Addr()), aggregate.Config{VisibilityTimeout: visibility})
	accounts := aggregate.Bind(x, accountType())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := newID("vis")
	if _, err := accounts.Execute(ctx, id, Deposit{Amount: 1}); err != nil {
		t.Fatal(err)
	}
	stream := "bank_account-" + id
	wrong := fmt.Sprintf("WRONGVER current stream version is 50 but expected 0 for partition key %s and stream id %s",
		sierradb.StreamPartitionKey(stream), stream)
	srv.FailNext("EAPPEND", wrong)
	srv.FailNext("EMAPPEND", wrong)
	start := time.Now()
	_, err := accounts.Execute(ctx, id, Deposit{Amount: 1})
	elapsed := time.Since(start)
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not visible after "+visibility.String()) {
		t.Fatalf("Execute after a conflict naming an invisible version: %v, want \"not visible after %s\"", err, visibility)
	}
	if elapsed < visibility {
		t.Fatalf("gave up after %s, before VisibilityTimeout (%s)", elapsed, visibility)
	}
	t.Logf("gave up after %s with: %v", elapsed.Round(time.Millisecond), err)
}

// A transaction's command ids are the same in every attempt, so a commit
// whose reply was lost (the embedded server stores the EMAPPEND and drops
// the connection instead of replying) is recognised when the closure runs
// again: nothing is written twice.
func TestTransactionCommandIDsStableAcrossAttempts(t *testing.T) {
	srv := embedded.RunT(t)
	c := newClient(t, srv.Addr())
	x := newExec(t, c, aggregate.Config{})
	key := uuid.New()
	typ := bankOf(key)
	ctx := ctxT(t)
	a, b := newID("a"), newID("b")
	if _, err := aggregate.Bind(x, typ).Execute(ctx, a, Deposit{Amount: 100}); err != nil {
		t.Fatal(err)
	}
	srv.DropReplyNext("EMAPPEND")
	runs := 0
	res, err := x.Transaction(ctx, key, func(ctx context.Context, tx *aggregate.Tx) error {
		runs++
		return transfer(a, b, 30, typ)(ctx, tx)
	})
	if err != nil || !res.Committed || runs < 2 {
		t.Fatalf("transfer with a lost commit reply: %+v after %d runs: %v", res, runs, err)
	}
	for _, r := range res.Results {
		if !r.Idempotent || len(r.Events) != 0 {
			t.Fatalf("the attempt after the lost reply wrote again: %+v", r)
		}
	}
	for stream, want := range map[string]int64{"bank_account-" + a: 1, "bank_account-" + b: 0} {
		if v, err := c.StreamVersion(ctx, stream, sierradb.WithPartitionKey(key)); err != nil || v != want {
			t.Fatalf("%s at version %d (%v), want %d: written twice", stream, v, err, want)
		}
	}
	sa, _, err := aggregate.Bind(newExec(t, c, aggregate.Config{}), typ).Load(ctx, a)
	if err != nil || sa.Balance != 70 {
		t.Fatalf("a has %d (%v), want 70", sa.Balance, err)
	}
	t.Logf("%d runs, one commit", runs)
}
