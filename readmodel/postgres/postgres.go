package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/internal/switcher"
)

// Config configures a [Store].
type Config struct {
	// TablePrefix names the store's tables: <prefix>checkpoints,
	// <prefix>parked, <prefix>resolved and <prefix>active, in the
	// connection's search_path. Letters, digits and '_'. Default:
	// "esmill_".
	TablePrefix string
	// LockWait is how long Begin waits for the projection's advisory lock
	// while another transaction of the projection holds it (such as the
	// session of a runner that was just killed, until the server notices).
	// Default: 2s; a negative value does not wait.
	LockWait time.Duration
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,40}$`)

// Validate reports every problem of c.
func (c Config) Validate() error {
	if c.TablePrefix != "" && !identRE.MatchString(c.TablePrefix) {
		return fmt.Errorf("postgres: TablePrefix %q must be letters, digits and '_'", c.TablePrefix)
	}
	return nil
}

// Store keeps checkpoints in PostgreSQL and gives handlers the batch's
// pgx.Tx. It implements readmodel.Store[pgx.Tx] and readmodel.Switcher.
type Store struct {
	pool     *pgxpool.Pool
	prefix   string
	lockWait time.Duration
	q        queries
}

type queries struct {
	checkpoints, insertCP, updateCP, park, parked, resetCP, resetParked, setActive, active string
	parkedQueries
	recordServer, resetServer string
}

// New returns a store on pool, creating its tables if they do not exist.
// The store does not close pool.
func New(ctx context.Context, pool *pgxpool.Pool, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TablePrefix == "" {
		cfg.TablePrefix = "esmill_"
	}
	if cfg.LockWait == 0 {
		cfg.LockWait = 2 * time.Second
	}
	p := cfg.TablePrefix
	schema := `
		CREATE TABLE IF NOT EXISTS ` + p + `checkpoints (
			projection text NOT NULL,
			partition_id int4 NOT NULL,
			sequence int8 NOT NULL,
			PRIMARY KEY (projection, partition_id)
		);
		CREATE TABLE IF NOT EXISTS ` + p + `parked (
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
			PRIMARY KEY (projection, partition_id, sequence)
		);
		CREATE TABLE IF NOT EXISTS ` + p + `active (
			name text PRIMARY KEY,
			projection text NOT NULL
		);
		CREATE TABLE IF NOT EXISTS ` + p + `servers (
			projection text PRIMARY KEY,
			server_id text NOT NULL
		);
		` + resolvedSchema(p)
	// Two stores creating the tables at once can collide in the catalog;
	// an advisory lock serialises them.
	tx, err := pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: create tables: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey(p, "")); err != nil {
		return nil, fmt.Errorf("postgres: create tables: %w", err)
	}
	if _, err := tx.Exec(ctx, schema+";"+leaseSchema(p)); err != nil {
		return nil, fmt.Errorf("postgres: create tables: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("postgres: create tables: %w", err)
	}
	return &Store{pool: pool, prefix: p, lockWait: cfg.LockWait, q: queries{
		checkpoints: `SELECT partition_id, sequence FROM ` + p + `checkpoints WHERE projection = $1`,
		insertCP: `INSERT INTO ` + p + `checkpoints (projection, partition_id, sequence)
			SELECT $1, v.partition_id, v.next FROM unnest($2::int4[], $3::int8[]) AS v(partition_id, next)
			ON CONFLICT DO NOTHING`,
		updateCP: `UPDATE ` + p + `checkpoints AS c SET sequence = v.next
			FROM unnest($2::int4[], $3::int8[], $4::int8[]) AS v(partition_id, prev, next)
			WHERE c.projection = $1 AND c.partition_id = v.partition_id AND c.sequence = v.prev`,
		park: `INSERT INTO ` + p + `parked (projection, partition_id, sequence, event_id, stream_id, stream_version, name,
			payload, metadata, cause, reason, attempts, parked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
			ON CONFLICT (projection, partition_id, sequence) DO UPDATE SET cause = excluded.cause,
			reason = excluded.reason, attempts = excluded.attempts, parked_at = excluded.parked_at`,
		parked: `SELECT partition_id, sequence, event_id, stream_id, stream_version, name, payload, metadata,
			cause, reason, attempts, parked_at FROM ` + p + `parked WHERE projection = $1 ORDER BY partition_id, sequence`,
		resetCP:     `DELETE FROM ` + p + `checkpoints WHERE projection = $1`,
		resetParked: `DELETE FROM ` + p + `parked WHERE projection = $1`,
		setActive:   `INSERT INTO ` + p + `active (name, projection) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET projection = excluded.projection`,
		active:      `SELECT projection FROM ` + p + `active WHERE name = $1`,
		recordServer: `WITH ins AS (INSERT INTO ` + p + `servers (projection, server_id) VALUES ($1, $2)
			ON CONFLICT (projection) DO NOTHING RETURNING server_id)
			SELECT server_id FROM ins UNION ALL SELECT server_id FROM ` + p + `servers WHERE projection = $1 LIMIT 1`,
		resetServer:   `DELETE FROM ` + p + `servers WHERE projection = $1`,
		parkedQueries: newParkedQueries(p),
	}}, nil
}

// lockKey is the advisory lock key of a projection.
func lockKey(prefix, projection string) int64 {
	h := fnv.New64a()
	h.Write([]byte("esmill/readmodel\x00" + prefix + "\x00" + projection))
	return int64(h.Sum64())
}

// Pool returns the pool, for reading the read model.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Checkpoints implements [readmodel.Store].
func (s *Store) Checkpoints(ctx context.Context, projection string) (map[uint16]uint64, error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, s.q.checkpoints, projection)
	if err != nil {
		return nil, fmt.Errorf("postgres: checkpoints: %w", err)
	}
	cps := make(map[uint16]uint64)
	var p int32
	var seq int64
	_, err = pgx.ForEachRow(rows, []any{&p, &seq}, func() error {
		cps[uint16(p)] = uint64(seq)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: checkpoints: %w", err)
	}
	return cps, nil
}

// Parked implements [readmodel.Store].
func (s *Store) Parked(ctx context.Context, projection string) ([]readmodel.ParkedEvent, error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, s.q.parked, projection)
	if err != nil {
		return nil, fmt.Errorf("postgres: parked: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (readmodel.ParkedEvent, error) {
		var ev readmodel.ParkedEvent
		var p, attempts int32
		var seq, version int64
		var cause string
		err := row.Scan(&p, &seq, &ev.EventID, &ev.StreamID, &version, &ev.Name, &ev.Payload, &ev.Metadata,
			&cause, &ev.Reason, &attempts, &ev.ParkedAt)
		ev.Partition, ev.Sequence, ev.StreamVersion = uint16(p), uint64(seq), uint64(version)
		ev.Cause, ev.Attempts, ev.ParkedAt = readmodel.Cause(cause), int(attempts), ev.ParkedAt.UTC()
		return ev, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: parked: %w", err)
	}
	return out, nil
}

// Begin implements [readmodel.Store]. It takes the projection's
// transaction-scoped advisory lock, waiting at most Config.LockWait: if
// another transaction of the projection still holds it then, Begin fails
// with [readmodel.ErrCheckpointConflict].
func (s *Store) Begin(ctx context.Context, projection string) (readmodel.Tx[pgx.Tx], error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return nil, err
	}
	return s.begin(ctx, projection, []advisory{{key: lockKey(s.prefix, projection)}})
}

// BeginPartitions implements [readmodel.PartitionBeginner]: it takes an
// advisory lock per partition (in partition order, the usual guard against
// two batches waiting for each other crosswise) and the projection's in
// shared mode,
// so that instances sharing the projection's partitions commit in
// parallel, while a transaction of [Store.Begin] (which takes the
// projection's lock exclusively) runs beside none of them.
func (s *Store) BeginPartitions(ctx context.Context, projection string, partitions []uint16) (readmodel.Tx[pgx.Tx], error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return nil, err
	}
	keys := make([]advisory, 0, len(partitions)+1)
	keys = append(keys, advisory{key: lockKey(s.prefix, projection), shared: true})
	for _, p := range partitions {
		keys = append(keys, advisory{key: lockKey(s.prefix, projection+"\x00"+strconv.Itoa(int(p)))})
	}
	return s.begin(ctx, projection, keys)
}

// IsTransient implements [readmodel.TransientChecker]: a deadlock or a
// serialization failure (SQLSTATE 40P01, 40001), which batches of
// instances working on different partitions can meet in rows they share,
// is cured by a retry.
func (s *Store) IsTransient(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// advisory is a transaction-scoped advisory lock to take.
type advisory struct {
	key    int64
	shared bool
}

func (a advisory) sql(try bool) string {
	fn := "pg_advisory_xact_lock"
	if try {
		fn = "pg_try_advisory_xact_lock"
	}
	if a.shared {
		fn += "_shared"
	}
	return "SELECT " + fn + "($1)"
}

func (s *Store) begin(ctx context.Context, projection string, keys []advisory) (readmodel.Tx[pgx.Tx], error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: begin: %w", err)
	}
	ok := true
	if s.lockWait < 0 {
		for _, key := range keys {
			if err = tx.QueryRow(ctx, key.sql(true), key.key).Scan(&ok); err != nil || !ok {
				break
			}
		}
	} else {
		// lock_timeout bounds the wait; it is set back to the session's
		// value at once, so that the handlers' statements do not inherit
		// it.
		b := &pgx.Batch{}
		b.Queue(`SELECT set_config('lock_timeout', $1, true)`, strconv.FormatInt(s.lockWait.Milliseconds(), 10)+"ms")
		for _, key := range keys {
			b.Queue(key.sql(false), key.key)
		}
		res := tx.SendBatch(ctx, b)
		var errs []error
		for range len(keys) + 1 {
			_, e := res.Exec()
			errs = append(errs, e)
		}
		err = errors.Join(append(errs, res.Close())...)
		if err == nil {
			_, err = tx.Exec(ctx, `SET LOCAL lock_timeout TO DEFAULT`)
		}
		var pgErr *pgconn.PgError
		ok = err == nil
		if errors.As(err, &pgErr) && pgErr.Code == "55P03" { // lock_not_available
			err = nil
		}
	}
	if err != nil {
		tx.Rollback(ctx)
		return nil, fmt.Errorf("postgres: begin: %w", err)
	}
	if !ok {
		tx.Rollback(ctx)
		return nil, &readmodel.ConflictError{Projection: projection, Expected: -1, Detail: "another transaction of the projection holds its advisory lock"}
	}
	return &Tx{s: s, tx: tx, projection: projection}, nil
}

// RecordServer implements [readmodel.ServerRecorder].
func (s *Store) RecordServer(ctx context.Context, projection, id string) (string, error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return "", err
	}
	var got string
	err := s.pool.QueryRow(ctx, s.q.recordServer, projection, id).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		// A racing caller's row, committed after this statement's
		// snapshot was taken.
		err = s.pool.QueryRow(ctx, `SELECT server_id FROM `+s.prefix+`servers WHERE projection = $1`, projection).Scan(&got)
	}
	if err != nil {
		return "", fmt.Errorf("postgres: record server: %w", err)
	}
	return got, nil
}

// Reset implements [readmodel.Store]: drop, the checkpoints and the parked
// events go in one transaction, under the projection's advisory lock.
func (s *Store) Reset(ctx context.Context, projection string, drop func(ctx context.Context, tx pgx.Tx) error) error {
	if err := readmodel.ValidateName(projection); err != nil {
		return err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey(s.prefix, projection)); err != nil {
		return fmt.Errorf("postgres: reset: %w", err)
	}
	if drop != nil {
		if err := drop(ctx, tx); err != nil {
			return err
		}
	}
	for _, q := range []string{s.q.resetCP, s.q.resetParked, s.q.resetResolved, s.q.resetServer} {
		if _, err := tx.Exec(ctx, q, projection); err != nil {
			return fmt.Errorf("postgres: reset: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: reset: %w", err)
	}
	return nil
}

// SetActive implements [readmodel.Switcher].
func (s *Store) SetActive(ctx context.Context, name, projection string) error {
	return switcher.Set(ctx, "postgres", name, projection, func(ctx context.Context, name, projection string) error {
		_, err := s.pool.Exec(ctx, s.q.setActive, name, projection)
		return err
	})
}

// Active implements [readmodel.Switcher].
func (s *Store) Active(ctx context.Context, name string) (string, error) {
	return switcher.Get(ctx, "postgres", name, pgx.ErrNoRows, func(ctx context.Context, name string) (p string, err error) {
		err = s.pool.QueryRow(ctx, s.q.active, name).Scan(&p)
		return p, err
	})
}

// Tx is a batch transaction of a [Store].
type Tx struct {
	s          *Store
	tx         pgx.Tx
	projection string
	// pending holds the statements queued by Queue, queued the
	// positions of the events that queued them; failed is the first
	// queued statement that failed.
	pending *pgx.Batch
	queued  []readmodel.Position
	failed  error
}

// Handle implements [readmodel.Tx]: every handler writes through the one
// pgx.Tx, which sends the statements queued with [Queue] before any other
// use.
func (t *Tx) Handle(pos readmodel.Position) pgx.Tx { return &queueTx{Tx: t.tx, t: t, pos: pos} }

// Park implements [readmodel.Tx].
func (t *Tx) Park(ctx context.Context, ev readmodel.ParkedEvent) error {
	_, err := t.tx.Exec(ctx, t.s.q.park, t.projection, int32(ev.Partition), int64(ev.Sequence), ev.EventID,
		ev.StreamID, int64(ev.StreamVersion), ev.Name, ev.Payload, ev.Metadata, string(ev.Cause), ev.Reason,
		int32(ev.Attempts), ev.ParkedAt)
	if err != nil {
		return fmt.Errorf("postgres: park: %w", err)
	}
	return nil
}

// Commit implements [readmodel.Tx]: the advances are compare-and-sets
// (see the package documentation), sent with one round trip, and every
// one must affect its row.
func (t *Tx) Commit(ctx context.Context, advances []readmodel.Advance) error {
	var upP, insP []int32
	var upPrev, upNext, insNext []int64
	for _, a := range advances {
		if a.Prev < 0 {
			insP, insNext = append(insP, int32(a.Partition)), append(insNext, int64(a.Next))
		} else {
			upP, upPrev, upNext = append(upP, int32(a.Partition)), append(upPrev, a.Prev), append(upNext, int64(a.Next))
		}
	}
	if t.failed != nil {
		return t.failed
	}
	if len(advances) > 0 || t.pending != nil {
		// The queued statements and the compare-and-set go in one
		// round trip.
		b, queued := t.pending, t.queued
		t.pending, t.queued = nil, nil
		if b == nil {
			b = &pgx.Batch{}
		}
		b.Queue(t.s.q.updateCP, t.projection, upP, upPrev, upNext)
		b.Queue(t.s.q.insertCP, t.projection, insP, insNext)
		res := t.tx.SendBatch(ctx, b)
		if err := t.readQueued(res, queued); err != nil {
			res.Close()
			return err
		}
		up, err1 := res.Exec()
		ins, err2 := res.Exec()
		err3 := res.Close()
		if err := errors.Join(err1, err2, err3); err != nil {
			return fmt.Errorf("postgres: checkpoint: %w", err)
		}
		if int(up.RowsAffected()) != len(upP) || int(ins.RowsAffected()) != len(insP) {
			return &readmodel.ConflictError{Projection: t.projection, Partition: advances[0].Partition, Expected: advances[0].Prev,
				Detail: fmt.Sprintf("%d of %d checkpoints matched", up.RowsAffected()+ins.RowsAffected(), len(advances))}
		}
	}
	if err := t.tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: commit: %w", err)
	}
	return nil
}

// Rollback implements [readmodel.Tx].
func (t *Tx) Rollback(ctx context.Context) error {
	if err := t.tx.Rollback(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return fmt.Errorf("postgres: rollback: %w", err)
	}
	return nil
}
