package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/esmill/esmill/lease"
)

// LeaseStore keeps the membership and partition leases of lease groups
// (the instances of a projection sharing its partitions, see
// readmodel.Config.Leases) in the store's database, in the tables
// <prefix>lease_members and <prefix>lease_owners. Expiry runs on the
// PostgreSQL server's clock (now()), so instances on machines whose clocks
// disagree still agree on who holds what. It implements [lease.Store]
// (tested: TestLeaseContract).
type LeaseStore struct {
	s *Store
}

// Leases returns the store's [lease.Store].
func (s *Store) Leases() *LeaseStore { return &LeaseStore{s: s} }

func leaseSchema(p string) string {
	return `
		CREATE TABLE IF NOT EXISTS ` + p + `lease_members (
			grp text NOT NULL,
			instance text NOT NULL,
			partitions int4 NOT NULL,
			expires timestamptz NOT NULL,
			PRIMARY KEY (grp, instance)
		);
		CREATE TABLE IF NOT EXISTS ` + p + `lease_owners (
			grp text NOT NULL,
			partition_id int4 NOT NULL,
			instance text NOT NULL,
			expires timestamptz NOT NULL,
			token int8 NOT NULL,
			PRIMARY KEY (grp, partition_id)
		)`
}

// Heartbeat implements [lease.Store]. The group's heartbeats are
// serialised by a transaction-scoped advisory lock.
func (l *LeaseStore) Heartbeat(ctx context.Context, req lease.HeartbeatRequest) (lease.Membership, error) {
	if err := req.Validate(); err != nil {
		return lease.Membership{}, err
	}
	p := l.s.prefix
	var ms lease.Membership
	err := pgx.BeginFunc(ctx, l.s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey(p, "lease\x00"+req.Group)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM `+p+`lease_members WHERE grp = $1 AND expires <= now()`, req.Group); err != nil {
			return err
		}
		var have int32
		err := tx.QueryRow(ctx, `SELECT partitions FROM `+p+`lease_members WHERE grp = $1 AND instance <> $2
			AND partitions <> $3 LIMIT 1`, req.Group, req.Instance, int32(req.Partitions)).Scan(&have)
		if err == nil {
			return &lease.PartitionCountError{Group: req.Group, Have: int(have), Want: req.Partitions}
		}
		if err != pgx.ErrNoRows {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+p+`lease_members (grp, instance, partitions, expires)
			VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond')
			ON CONFLICT (grp, instance) DO UPDATE SET partitions = excluded.partitions, expires = excluded.expires`,
			req.Group, req.Instance, int32(req.Partitions), req.TTL.Milliseconds()); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT instance FROM `+p+`lease_members WHERE grp = $1 ORDER BY instance`, req.Group)
		if err != nil {
			return err
		}
		ms.Members, err = pgx.CollectRows(rows, pgx.RowTo[string])
		ms.Partitions = req.Partitions
		return err
	})
	if err != nil {
		if _, ok := err.(*lease.PartitionCountError); ok {
			return lease.Membership{}, err
		}
		return lease.Membership{}, fmt.Errorf("postgres: lease heartbeat of %s in group %s: %w", req.Instance, req.Group, err)
	}
	return ms, nil
}

// Acquire implements [lease.Store] with one INSERT … ON CONFLICT DO
// UPDATE … WHERE, atomic per row: a partition is taken over only when its
// lease has expired or is the instance's own. A released lease keeps its
// row, expired, so that the token only grows.
func (l *LeaseStore) Acquire(ctx context.Context, req lease.AcquireRequest) ([]lease.Grant, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if len(req.Partitions) == 0 {
		return nil, nil
	}
	// Sorted, so that concurrent acquisitions lock rows in one order.
	ps := make([]int32, 0, len(req.Partitions))
	for _, p := range req.Partitions {
		ps = append(ps, int32(p))
	}
	slices.Sort(ps)
	ps = slices.Compact(ps)
	p := l.s.prefix
	rows, err := l.s.pool.Query(ctx, `INSERT INTO `+p+`lease_owners AS o (grp, partition_id, instance, expires, token)
		SELECT $1, v.p, $2, now() + $3 * interval '1 millisecond', 1 FROM unnest($4::int4[]) AS v(p)
		ON CONFLICT (grp, partition_id) DO UPDATE SET
			token = CASE WHEN o.instance = excluded.instance AND o.expires > now() THEN o.token ELSE o.token + 1 END,
			instance = excluded.instance, expires = excluded.expires
		WHERE o.instance = excluded.instance OR o.expires <= now()
		RETURNING partition_id, token`, req.Group, req.Instance, req.TTL.Milliseconds(), ps)
	if err != nil {
		return nil, fmt.Errorf("postgres: lease acquire for %s in group %s: %w", req.Instance, req.Group, err)
	}
	got := make(map[int]uint64)
	var part int32
	var token int64
	if _, err := pgx.ForEachRow(rows, []any{&part, &token}, func() error {
		got[int(part)] = uint64(token)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("postgres: lease acquire for %s in group %s: %w", req.Instance, req.Group, err)
	}
	return grantsInOrder(req.Partitions, got), nil
}

// grantsInOrder lists the granted partitions in the order asked.
func grantsInOrder(asked []int, got map[int]uint64) []lease.Grant {
	out := make([]lease.Grant, 0, len(got))
	for _, p := range asked {
		if tok, ok := got[p]; ok {
			out = append(out, lease.Grant{Partition: p, Token: tok})
			delete(got, p)
		}
	}
	return out
}

// Release implements [lease.Store]: the leases expire at once.
func (l *LeaseStore) Release(ctx context.Context, group, instance string, partitions []int) error {
	if len(partitions) == 0 {
		return nil
	}
	ps := make([]int32, 0, len(partitions))
	for _, p := range partitions {
		ps = append(ps, int32(p))
	}
	_, err := l.s.pool.Exec(ctx, `UPDATE `+l.s.prefix+`lease_owners SET expires = '-infinity'
		WHERE grp = $1 AND instance = $2 AND partition_id = ANY($3::int4[])`, group, instance, ps)
	if err != nil {
		return fmt.Errorf("postgres: lease release for %s in group %s: %w", instance, group, err)
	}
	return nil
}

// Leave implements [lease.Store].
func (l *LeaseStore) Leave(ctx context.Context, group, instance string) error {
	_, err := l.s.pool.Exec(ctx, `DELETE FROM `+l.s.prefix+`lease_members WHERE grp = $1 AND instance = $2`, group, instance)
	if err != nil {
		return fmt.Errorf("postgres: lease leave of %s from group %s: %w", instance, group, err)
	}
	return nil
}
