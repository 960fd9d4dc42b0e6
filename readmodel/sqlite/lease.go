package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/esmill/esmill/lease"
)

// LeaseStore keeps the membership and partition leases of lease groups
// (the instances of a projection sharing its partitions, see
// readmodel.Config.Leases) in the store's database, in the tables
// <prefix>lease_members and <prefix>lease_owners. Every call is one
// transaction (BEGIN IMMEDIATE, see [OpenDB]).
//
// Expiry runs on the local clock of each process. A SQLite file is shared
// only by the processes of one machine, which read one clock, so they
// agree on who holds what. It implements [lease.Store] (tested:
// TestLeaseContract).
type LeaseStore struct {
	s   *Store
	now func() time.Time
}

// Leases returns the store's [lease.Store].
func (s *Store) Leases() *LeaseStore { return &LeaseStore{s: s, now: time.Now} }

func leaseSchema(p string) []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + p + `lease_members (
			grp TEXT NOT NULL,
			instance TEXT NOT NULL,
			partitions INTEGER NOT NULL,
			expires INTEGER NOT NULL,
			PRIMARY KEY (grp, instance)
		)`,
		`CREATE TABLE IF NOT EXISTS ` + p + `lease_owners (
			grp TEXT NOT NULL,
			partition_id INTEGER NOT NULL,
			instance TEXT NOT NULL,
			expires INTEGER NOT NULL,
			token INTEGER NOT NULL,
			PRIMARY KEY (grp, partition_id)
		)`,
	}
}

func (l *LeaseStore) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := l.s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// Heartbeat implements [lease.Store].
func (l *LeaseStore) Heartbeat(ctx context.Context, req lease.HeartbeatRequest) (lease.Membership, error) {
	if err := req.Validate(); err != nil {
		return lease.Membership{}, err
	}
	p := l.s.prefix
	var ms lease.Membership
	err := l.inTx(ctx, func(tx *sql.Tx) error {
		now := l.now().UnixMilli()
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+p+`lease_members WHERE grp = ? AND expires <= ?`, req.Group, now); err != nil {
			return err
		}
		var have int
		err := tx.QueryRowContext(ctx, `SELECT partitions FROM `+p+`lease_members WHERE grp = ? AND instance <> ?
			AND partitions <> ? LIMIT 1`, req.Group, req.Instance, req.Partitions).Scan(&have)
		if err == nil {
			return &lease.PartitionCountError{Group: req.Group, Have: have, Want: req.Partitions}
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+p+`lease_members (grp, instance, partitions, expires) VALUES (?, ?, ?, ?)
			ON CONFLICT (grp, instance) DO UPDATE SET partitions = excluded.partitions, expires = excluded.expires`,
			req.Group, req.Instance, req.Partitions, now+req.TTL.Milliseconds()); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT instance FROM `+p+`lease_members WHERE grp = ? ORDER BY instance`, req.Group)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var m string
			if err := rows.Scan(&m); err != nil {
				return err
			}
			ms.Members = append(ms.Members, m)
		}
		ms.Partitions = req.Partitions
		return rows.Err()
	})
	if err != nil {
		var pc *lease.PartitionCountError
		if errors.As(err, &pc) {
			return lease.Membership{}, err
		}
		return lease.Membership{}, fmt.Errorf("sqlite: lease heartbeat of %s in group %s: %w", req.Instance, req.Group, err)
	}
	return ms, nil
}

// Acquire implements [lease.Store]: per partition, one upsert that takes
// the row only when its lease has expired or is the instance's own. A
// released lease keeps its row, expired, so that the token only grows.
func (l *LeaseStore) Acquire(ctx context.Context, req lease.AcquireRequest) ([]lease.Grant, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if len(req.Partitions) == 0 {
		return nil, nil
	}
	ps := slices.Clone(req.Partitions)
	slices.Sort(ps)
	ps = slices.Compact(ps)
	got := make(map[int]uint64)
	err := l.inTx(ctx, func(tx *sql.Tx) error {
		now := l.now().UnixMilli()
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO `+l.s.prefix+`lease_owners (grp, partition_id, instance, expires, token)
			VALUES (?1, ?2, ?3, ?4, 1)
			ON CONFLICT (grp, partition_id) DO UPDATE SET
				token = CASE WHEN instance = excluded.instance AND expires > ?5 THEN token ELSE token + 1 END,
				instance = excluded.instance, expires = excluded.expires
			WHERE instance = excluded.instance OR expires <= ?5
			RETURNING token`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, p := range ps {
			var tok int64
			err := stmt.QueryRowContext(ctx, req.Group, p, req.Instance, now+req.TTL.Milliseconds(), now).Scan(&tok)
			if errors.Is(err, sql.ErrNoRows) {
				continue // held by another instance
			}
			if err != nil {
				return err
			}
			got[p] = uint64(tok)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: lease acquire for %s in group %s: %w", req.Instance, req.Group, err)
	}
	out := make([]lease.Grant, 0, len(got))
	for _, p := range req.Partitions {
		if tok, ok := got[p]; ok {
			out = append(out, lease.Grant{Partition: p, Token: tok})
			delete(got, p)
		}
	}
	return out, nil
}

// Release implements [lease.Store]: the leases expire at once.
func (l *LeaseStore) Release(ctx context.Context, group, instance string, partitions []int) error {
	if len(partitions) == 0 {
		return nil
	}
	args := []any{group, instance}
	for _, p := range partitions {
		args = append(args, p)
	}
	q := `UPDATE ` + l.s.prefix + `lease_owners SET expires = -1 WHERE grp = ? AND instance = ? AND partition_id IN (?` +
		strings.Repeat(", ?", len(partitions)-1) + `)`
	if _, err := l.s.db.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("sqlite: lease release for %s in group %s: %w", instance, group, err)
	}
	return nil
}

// Leave implements [lease.Store].
func (l *LeaseStore) Leave(ctx context.Context, group, instance string) error {
	if _, err := l.s.db.ExecContext(ctx, `DELETE FROM `+l.s.prefix+`lease_members WHERE grp = ? AND instance = ?`, group, instance); err != nil {
		return fmt.Errorf("sqlite: lease leave of %s from group %s: %w", instance, group, err)
	}
	return nil
}
