package postgres

// Queued writes: the statements handlers queue with Queue are sent
// together (pgx.Batch, one round trip) with the checkpoint's
// compare-and-set, in the batch's transaction.

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/esmill/esmill/readmodel"
)

// Queue runs a statement of a projection handler. Given the handle of a
// [Store]'s batch, it queues the statement: the batch's queued statements
// are sent in one round trip (a pgx.Batch), together with the checkpoint's
// compare-and-set, when the batch commits, so that a batch of a thousand
// events costs a few round trips instead of a thousand. Given any other
// pgx.Tx, it runs the statement at once (tx.Exec).
//
// A queued statement's result is not seen by the handler: use it for
// writes whose outcome the handler need not read (INSERT … ON CONFLICT,
// UPDATE of counters). A handler that reads through the handle (Exec,
// Query, QueryRow, CopyFrom, SendBatch) first sends what is queued, so it
// reads its batch's earlier writes. A queued statement that fails fails
// the event that queued it (a [readmodel.WriteError]): the runner commits
// the events before it, and retries or parks that event as configured,
// exactly as if its handler had returned the error (tested:
// TestQueueFailureIsTheEventsFailure).
func Queue(ctx context.Context, tx pgx.Tx, sql string, args ...any) error {
	q, ok := tx.(*queueTx)
	if !ok {
		_, err := tx.Exec(ctx, sql, args...)
		return err
	}
	if q.t.failed != nil {
		return q.t.failed
	}
	if q.t.pending == nil {
		q.t.pending = &pgx.Batch{}
	}
	q.t.pending.Queue(sql, args...)
	q.t.queued = append(q.t.queued, q.pos)
	return nil
}

// queueTx is the handle a [Tx] gives the handlers of the event at pos:
// the batch's pgx.Tx, which sends the queued statements before any other
// use.
type queueTx struct {
	pgx.Tx
	t   *Tx
	pos readmodel.Position
}

func (q *queueTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := q.t.flush(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return q.Tx.Exec(ctx, sql, args...)
}

func (q *queueTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := q.t.flush(ctx); err != nil {
		return nil, err
	}
	return q.Tx.Query(ctx, sql, args...)
}

func (q *queueTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := q.t.flush(ctx); err != nil {
		return errRow{err}
	}
	return q.Tx.QueryRow(ctx, sql, args...)
}

func (q *queueTx) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	if err := q.t.flush(ctx); err != nil {
		return 0, err
	}
	return q.Tx.CopyFrom(ctx, table, cols, src)
}

func (q *queueTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := q.t.flush(ctx); err != nil {
		return errBatch{err}
	}
	return q.Tx.SendBatch(ctx, b)
}

func (q *queueTx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := q.t.flush(ctx); err != nil {
		return nil, err
	}
	return q.Tx.Begin(ctx)
}

// errRow is a row whose Scan fails.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// errBatch is a batch whose every result fails.
type errBatch struct{ err error }

func (b errBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, b.err }
func (b errBatch) Query() (pgx.Rows, error)         { return nil, b.err }
func (b errBatch) QueryRow() pgx.Row                { return errRow(b) }
func (b errBatch) Close() error                     { return b.err }
func (b errBatch) Tx() pgx.Tx                       { return nil }

// flush sends the queued statements. The first that fails is a
// *readmodel.WriteError of its event, kept: the transaction is aborted,
// and Commit returns it too.
func (t *Tx) flush(ctx context.Context) error {
	if t.failed != nil {
		return t.failed
	}
	if t.pending == nil {
		return nil
	}
	b, queued := t.pending, t.queued
	t.pending, t.queued = nil, t.queued[:0]
	res := t.tx.SendBatch(ctx, b)
	err := t.readQueued(res, queued)
	if cerr := res.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("postgres: queued writes: %w", cerr)
	}
	return err
}

// readQueued reads the results of the queued statements at the head of a
// sent batch; the first failure is a *readmodel.WriteError, recorded in t.
func (t *Tx) readQueued(res pgx.BatchResults, queued []readmodel.Position) error {
	for _, pos := range queued {
		if _, err := res.Exec(); err != nil {
			t.failed = &readmodel.WriteError{Position: pos, Err: err}
			return t.failed
		}
	}
	return nil
}
