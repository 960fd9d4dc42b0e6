package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/readmodel"
)

// The resolved table keeps the parked events that were replayed or
// skipped, with who did it and why.
func resolvedSchema(p string) string {
	return `CREATE TABLE IF NOT EXISTS ` + p + `resolved (
			projection TEXT NOT NULL,
			partition_id INTEGER NOT NULL,
			sequence INTEGER NOT NULL,
			event_id TEXT NOT NULL,
			stream_id TEXT NOT NULL,
			stream_version INTEGER NOT NULL,
			name TEXT NOT NULL,
			payload BLOB,
			metadata BLOB,
			cause TEXT NOT NULL,
			reason TEXT NOT NULL,
			attempts INTEGER NOT NULL,
			parked_at INTEGER NOT NULL,
			action TEXT NOT NULL,
			resolved_by TEXT NOT NULL,
			note TEXT NOT NULL,
			resolved_at INTEGER NOT NULL,
			PRIMARY KEY (projection, partition_id, sequence)
		)`
}

type parkedQueries struct {
	unpark, resolve, resolved, resetResolved string
}

const parkedColumns = `partition_id, sequence, event_id, stream_id, stream_version, name, payload, metadata,
	cause, reason, attempts, parked_at`

func newParkedQueries(p string) parkedQueries {
	return parkedQueries{
		unpark: `DELETE FROM ` + p + `parked WHERE projection = ? AND partition_id = ? AND sequence = ?
			RETURNING ` + parkedColumns,
		resolve: `INSERT INTO ` + p + `resolved (projection, ` + parkedColumns + `, action, resolved_by, note, resolved_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (projection, partition_id, sequence) DO UPDATE SET cause = excluded.cause,
			reason = excluded.reason, attempts = excluded.attempts, parked_at = excluded.parked_at,
			action = excluded.action, resolved_by = excluded.resolved_by, note = excluded.note,
			resolved_at = excluded.resolved_at`,
		resolved: `SELECT ` + parkedColumns + `, action, resolved_by, note, resolved_at FROM ` + p + `resolved
			WHERE projection = ? ORDER BY partition_id, sequence`,
		resetResolved: `DELETE FROM ` + p + `resolved WHERE projection = ?`,
	}
}

// parkedRow scans the parked columns.
type parkedRow struct {
	ev               readmodel.ParkedEvent
	id, cause        string
	seq, version, at int64
}

func (r *parkedRow) dest() []any {
	return []any{&r.ev.Partition, &r.seq, &r.id, &r.ev.StreamID, &r.version, &r.ev.Name, &r.ev.Payload,
		&r.ev.Metadata, &r.cause, &r.ev.Reason, &r.ev.Attempts, &r.at}
}

func (r *parkedRow) event() readmodel.ParkedEvent {
	ev := r.ev
	ev.Sequence, ev.StreamVersion, ev.Cause = uint64(r.seq), uint64(r.version), readmodel.Cause(r.cause)
	ev.EventID, _ = uuid.Parse(r.id)
	ev.ParkedAt = time.Unix(0, r.at).UTC()
	return ev
}

// Resolved implements [readmodel.Store].
func (s *Store) Resolved(ctx context.Context, projection string) ([]readmodel.ResolvedEvent, error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, s.q.resolved, projection)
	if err != nil {
		return nil, fmt.Errorf("sqlite: resolved: %w", err)
	}
	defer rows.Close()
	var out []readmodel.ResolvedEvent
	for rows.Next() {
		var r parkedRow
		var res readmodel.Resolution
		var action string
		var at int64
		if err := rows.Scan(append(r.dest(), &action, &res.By, &res.Note, &at)...); err != nil {
			return nil, fmt.Errorf("sqlite: resolved: %w", err)
		}
		res.Action, res.At = readmodel.Action(action), time.Unix(0, at).UTC()
		out = append(out, readmodel.ResolvedEvent{ParkedEvent: r.event(), Resolution: res})
	}
	return out, rows.Err()
}

// Unpark implements [readmodel.Tx]: the parked row is deleted (which
// locks it: a second transaction unparking it finds nothing) and the
// resolution recorded, in the batch's transaction.
func (t *Tx) Unpark(ctx context.Context, pos readmodel.Position, res readmodel.Resolution) (readmodel.ParkedEvent, error) {
	var r parkedRow
	err := t.tx.QueryRowContext(ctx, t.s.q.unpark, t.projection, pos.Partition, int64(pos.Sequence)).Scan(r.dest()...)
	if errors.Is(err, sql.ErrNoRows) {
		return readmodel.ParkedEvent{}, &readmodel.NotParkedError{Projection: t.projection, Position: pos}
	}
	if err != nil {
		return readmodel.ParkedEvent{}, fmt.Errorf("sqlite: unpark: %w", err)
	}
	ev := r.event()
	_, err = t.tx.ExecContext(ctx, t.s.q.resolve, t.projection, ev.Partition, int64(ev.Sequence), ev.EventID.String(),
		ev.StreamID, int64(ev.StreamVersion), ev.Name, ev.Payload, ev.Metadata, string(ev.Cause), ev.Reason,
		ev.Attempts, ev.ParkedAt.UnixNano(), string(res.Action), res.By, res.Note, res.At.UnixNano())
	if err != nil {
		return readmodel.ParkedEvent{}, fmt.Errorf("sqlite: unpark: %w", err)
	}
	return ev, nil
}
