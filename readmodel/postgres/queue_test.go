package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/checkpointtest"
	"github.com/esmill/esmill/readmodel/postgres"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

// TestContractQueued runs the store contract with handlers that queue
// their writes (postgres.Queue), sent once per batch with the checkpoint.
func TestContractQueued(t *testing.T) {
	schemas := map[readmodel.Store[pgx.Tx]]string{}
	checkpointtest.Run(t, checkpointtest.Harness[pgx.Tx]{
		New: func(t testing.TB) readmodel.Store[pgx.Tx] {
			pool, schema := newSchema(t)
			s := newStore(t, pool)
			schemas[s] = schema
			return s
		},
		Reopen: func(t testing.TB, old readmodel.Store[pgx.Tx]) readmodel.Store[pgx.Tx] {
			old.(*postgres.Store).Pool().Close()
			s := newStore(t, openPool(t, testservice.RequirePostgres(t), schemas[old]))
			schemas[s] = schemas[old]
			return s
		},
		Add: func(ctx context.Context, tx pgx.Tx, projection, key string, delta int64) error {
			return postgres.Queue(ctx, tx, `INSERT INTO rm (projection, key, value) VALUES ($1, $2, $3)
				ON CONFLICT (projection, key) DO UPDATE SET value = rm.value + excluded.value`, projection, key, delta)
		},
		Get: func(ctx context.Context, st readmodel.Store[pgx.Tx], projection, key string) (int64, bool, error) {
			var v int64
			err := st.(*postgres.Store).Pool().QueryRow(ctx, `SELECT value FROM rm WHERE projection = $1 AND key = $2`, projection, key).Scan(&v)
			if errors.Is(err, pgx.ErrNoRows) {
				return 0, false, nil
			}
			return v, err == nil, err
		},
		Drop: func(ctx context.Context, tx pgx.Tx, projection string) error {
			return postgres.Queue(ctx, tx, `DELETE FROM rm WHERE projection = $1`, projection)
		},
	})
}

type queued struct{ Amount int64 }

func (queued) EventName() string { return "Queued" }

// A queued statement that fails when the batch is sent fails the event
// that queued it, and only that one: the events before it and after it
// are applied once, the failing one is parked with the database's error,
// and a handler that reads after queueing sees its batch's earlier writes.
func TestQueueFailureIsTheEventsFailure(t *testing.T) {
	pool, _ := newSchema(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE qrm (id text PRIMARY KEY, amount int8 NOT NULL CHECK (amount <> 13));
		CREATE TABLE qreads (id text PRIMARY KEY, seen int8 NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	st, err := postgres.New(ctx, pool, postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := embedded.RunT(t)
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	typ := aggregate.MustDefine[struct{}, string](fmt.Sprintf("qacct%d", time.Now().UnixNano()), aggregate.On(func(*struct{}, queued) {}))
	const n = 40
	var last sierradb.AppendResult
	for i := range n {
		_, p, err := typ.EncodeEvent(queued{Amount: int64(i)})
		if err != nil {
			t.Fatal(err)
		}
		// One stream, so that the events share a partition and come in
		// order.
		last, err = client.Append(ctx, sierradb.NewEvent{StreamID: typ.Category() + "-x", Name: "Queued", Payload: p, ExpectedVersion: sierradb.ExpectAfter(int64(i) - 1)})
		if err != nil {
			t.Fatal(err)
		}
	}
	r, err := readmodel.New(readmodel.Config[pgx.Tx]{
		Name: "queued", Client: client, Store: st, BatchSize: 100, BatchTimeout: 50 * time.Millisecond,
		MaxAttempts: 2, RetryBackoff: time.Millisecond, MaxRetryBackoff: 5 * time.Millisecond,
		Handlers: []readmodel.Handler[pgx.Tx]{readmodel.On(typ, func(ctx context.Context, tx pgx.Tx, _ string, e queued, m readmodel.Meta) error {
			if err := postgres.Queue(ctx, tx, `INSERT INTO qrm (id, amount) VALUES ($1, $2)`, fmt.Sprint(e.Amount), e.Amount); err != nil {
				return err
			}
			if e.Amount == 30 {
				// A read sends what is queued first, and sees it.
				var seen int64
				if err := tx.QueryRow(ctx, `SELECT count(*) FROM qrm`).Scan(&seen); err != nil {
					return err
				}
				return postgres.Queue(ctx, tx, `INSERT INTO qreads (id, seen) VALUES ('30', $1)`, seen)
			}
			return nil
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := r.WaitFor(wctx, readmodel.Position{Partition: last.PartitionID, Sequence: last.PartitionSequence}); err != nil {
		t.Fatal(err)
	}
	var rows, sum int64
	if err := pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(amount), 0) FROM qrm`).Scan(&rows, &sum); err != nil {
		t.Fatal(err)
	}
	if want := int64(n*(n-1)/2 - 13); rows != n-1 || sum != want {
		t.Fatalf("read model has %d rows summing %d, want %d rows summing %d", rows, sum, n-1, want)
	}
	var seen int64
	if err := pool.QueryRow(ctx, `SELECT seen FROM qreads WHERE id = '30'`).Scan(&seen); err != nil {
		t.Fatal(err)
	}
	if seen != 30 { // events 0..30 without 13
		t.Fatalf("the read after queueing saw %d rows, want 30", seen)
	}
	parked, err := st.Parked(ctx, "queued")
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 1 || parked[0].StreamVersion != 13 || parked[0].Cause != readmodel.CauseHandler || parked[0].Attempts != 2 {
		t.Fatalf("parked = %+v, want the event at version 13, after 2 attempts", parked)
	}
	t.Logf("parked: %s", parked[0].Reason)
}
