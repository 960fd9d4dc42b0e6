package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/esmill/esmill/readmodel"
)

// The resolved table keeps the parked events that were replayed or
// skipped, with who did it and why.
func resolvedSchema(p string) string {
	return `CREATE TABLE IF NOT EXISTS ` + p + `resolved (
			projection text NOT NULL,
			partition_id int4 NOT NULL,
			sequence int8 NOT NULL,
			event_id uuid NOT NULL,
			stream_id text NOT NULL,
			stream_version int8 NOT NULL,
			name text NOT NULL,
			payload bytea,
			metadata bytea,
			cause text NOT NULL,
			reason text NOT NULL,
			attempts int4 NOT NULL,
			parked_at timestamptz NOT NULL,
			action text NOT NULL,
			resolved_by text NOT NULL,
			note text NOT NULL,
			resolved_at timestamptz NOT NULL,
			PRIMARY KEY (projection, partition_id, sequence)
		)`
}

type parkedQueries struct {
	unpark, resolved, resetResolved string
}

const parkedColumns = `partition_id, sequence, event_id, stream_id, stream_version, name, payload, metadata,
	cause, reason, attempts, parked_at`

func newParkedQueries(p string) parkedQueries {
	return parkedQueries{
		// One statement: the DELETE locks the parked row (a concurrent
		// unpark waits, then deletes nothing) and the INSERT records
		// the resolution from the deleted row.
		unpark: `WITH gone AS (
				DELETE FROM ` + p + `parked WHERE projection = $1 AND partition_id = $2 AND sequence = $3
				RETURNING projection, ` + parkedColumns + `
			), kept AS (
				INSERT INTO ` + p + `resolved (projection, ` + parkedColumns + `, action, resolved_by, note, resolved_at)
				SELECT projection, ` + parkedColumns + `, $4, $5, $6, $7 FROM gone
				ON CONFLICT (projection, partition_id, sequence) DO UPDATE SET cause = excluded.cause,
				reason = excluded.reason, attempts = excluded.attempts, parked_at = excluded.parked_at,
				action = excluded.action, resolved_by = excluded.resolved_by, note = excluded.note,
				resolved_at = excluded.resolved_at
			)
			SELECT ` + parkedColumns + ` FROM gone`,
		resolved: `SELECT ` + parkedColumns + `, action, resolved_by, note, resolved_at FROM ` + p + `resolved
			WHERE projection = $1 ORDER BY partition_id, sequence`,
		resetResolved: `DELETE FROM ` + p + `resolved WHERE projection = $1`,
	}
}

// parkedRow scans the parked columns.
type parkedRow struct {
	ev           readmodel.ParkedEvent
	p, attempts  int32
	seq, version int64
	cause        string
}

func (r *parkedRow) dest() []any {
	return []any{&r.p, &r.seq, &r.ev.EventID, &r.ev.StreamID, &r.version, &r.ev.Name, &r.ev.Payload, &r.ev.Metadata,
		&r.cause, &r.ev.Reason, &r.attempts, &r.ev.ParkedAt}
}

func (r *parkedRow) event() readmodel.ParkedEvent {
	ev := r.ev
	ev.Partition, ev.Sequence, ev.StreamVersion = uint16(r.p), uint64(r.seq), uint64(r.version)
	ev.Cause, ev.Attempts, ev.ParkedAt = readmodel.Cause(r.cause), int(r.attempts), ev.ParkedAt.UTC()
	return ev
}

// Resolved implements [readmodel.Store].
func (s *Store) Resolved(ctx context.Context, projection string) ([]readmodel.ResolvedEvent, error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, s.q.resolved, projection)
	if err != nil {
		return nil, fmt.Errorf("postgres: resolved: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (readmodel.ResolvedEvent, error) {
		var r parkedRow
		var res readmodel.Resolution
		var action string
		err := row.Scan(append(r.dest(), &action, &res.By, &res.Note, &res.At)...)
		res.Action, res.At = readmodel.Action(action), res.At.UTC()
		return readmodel.ResolvedEvent{ParkedEvent: r.event(), Resolution: res}, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: resolved: %w", err)
	}
	return out, nil
}

// Unpark implements [readmodel.Tx]: the parked row is deleted (which
// locks it: a second transaction unparking it waits, then finds nothing)
// and the resolution recorded, in one statement of the batch's
// transaction.
func (t *Tx) Unpark(ctx context.Context, pos readmodel.Position, res readmodel.Resolution) (readmodel.ParkedEvent, error) {
	var r parkedRow
	err := t.tx.QueryRow(ctx, t.s.q.unpark, t.projection, int32(pos.Partition), int64(pos.Sequence),
		string(res.Action), res.By, res.Note, res.At).Scan(r.dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return readmodel.ParkedEvent{}, &readmodel.NotParkedError{Projection: t.projection, Position: pos}
	}
	if err != nil {
		return readmodel.ParkedEvent{}, fmt.Errorf("postgres: unpark: %w", err)
	}
	return r.event(), nil
}
