package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"time"

	"github.com/google/uuid"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/internal/switcher"
)

// Config configures a [Store].
type Config struct {
	// TablePrefix names the store's tables: <prefix>checkpoints,
	// <prefix>parked and <prefix>active. Letters, digits and '_'.
	// Default: "esmill_".
	TablePrefix string
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,40}$`)

// Validate reports every problem of c.
func (c Config) Validate() error {
	if c.TablePrefix != "" && !identRE.MatchString(c.TablePrefix) {
		return fmt.Errorf("sqlite: TablePrefix %q must be letters, digits and '_'", c.TablePrefix)
	}
	return nil
}

// OpenDB opens (creating it if needed) the SQLite database at path with
// WAL journaling, a 10 s busy timeout, synchronous=FULL and BEGIN
// IMMEDIATE transactions.
func OpenDB(path string) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return db, nil
}

// Store keeps checkpoints in SQLite and gives handlers the batch's
// *sql.Tx. It implements readmodel.Store[*sql.Tx] and readmodel.Switcher.
type Store struct {
	db     *sql.DB
	prefix string
	q      queries
}

type queries struct {
	checkpoints, insertCP, updateCP, park, parked, resetCP, resetParked, setActive, active string
	insertServer, server, resetServer                                                      string
}

// New returns a store on db, creating its tables if they do not exist.
// The store does not close db.
func New(ctx context.Context, db *sql.DB, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TablePrefix == "" {
		cfg.TablePrefix = "esmill_"
	}
	p := cfg.TablePrefix
	schema := []string{
		`CREATE TABLE IF NOT EXISTS ` + p + `checkpoints (
			projection TEXT NOT NULL,
			partition_id INTEGER NOT NULL,
			sequence INTEGER NOT NULL,
			PRIMARY KEY (projection, partition_id)
		)`,
		`CREATE TABLE IF NOT EXISTS ` + p + `parked (
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
			PRIMARY KEY (projection, partition_id, sequence)
		)`,
		`CREATE TABLE IF NOT EXISTS ` + p + `active (
			name TEXT PRIMARY KEY,
			projection TEXT NOT NULL
		)`,
		`CREATE TABLE IF NOT EXISTS ` + p + `servers (
			projection TEXT PRIMARY KEY,
			server_id TEXT NOT NULL
		)`,
	}
	for _, stmt := range append(schema, leaseSchema(p)...) {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return nil, fmt.Errorf("sqlite: create tables: %w", err)
		}
	}
	return &Store{db: db, prefix: p, q: queries{
		checkpoints: `SELECT partition_id, sequence FROM ` + p + `checkpoints WHERE projection = ?`,
		insertCP:    `INSERT INTO ` + p + `checkpoints (projection, partition_id, sequence) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
		updateCP:    `UPDATE ` + p + `checkpoints SET sequence = ? WHERE projection = ? AND partition_id = ? AND sequence = ?`,
		park: `INSERT INTO ` + p + `parked (projection, partition_id, sequence, event_id, stream_id, stream_version, name,
			payload, metadata, cause, reason, attempts, parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (projection, partition_id, sequence) DO UPDATE SET cause = excluded.cause,
			reason = excluded.reason, attempts = excluded.attempts, parked_at = excluded.parked_at`,
		parked: `SELECT partition_id, sequence, event_id, stream_id, stream_version, name, payload, metadata,
			cause, reason, attempts, parked_at FROM ` + p + `parked WHERE projection = ? ORDER BY partition_id, sequence`,
		resetCP:      `DELETE FROM ` + p + `checkpoints WHERE projection = ?`,
		resetParked:  `DELETE FROM ` + p + `parked WHERE projection = ?`,
		setActive:    `INSERT INTO ` + p + `active (name, projection) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET projection = excluded.projection`,
		active:       `SELECT projection FROM ` + p + `active WHERE name = ?`,
		insertServer: `INSERT INTO ` + p + `servers (projection, server_id) VALUES (?, ?) ON CONFLICT DO NOTHING`,
		server:       `SELECT server_id FROM ` + p + `servers WHERE projection = ?`,
		resetServer:  `DELETE FROM ` + p + `servers WHERE projection = ?`,
	}}, nil
}

// DB returns the database, for reading the read model.
func (s *Store) DB() *sql.DB { return s.db }

// Checkpoints implements [readmodel.Store].
func (s *Store) Checkpoints(ctx context.Context, projection string) (map[uint16]uint64, error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, s.q.checkpoints, projection)
	if err != nil {
		return nil, fmt.Errorf("sqlite: checkpoints: %w", err)
	}
	defer rows.Close()
	cps := make(map[uint16]uint64)
	for rows.Next() {
		var p uint16
		var seq int64
		if err := rows.Scan(&p, &seq); err != nil {
			return nil, fmt.Errorf("sqlite: checkpoints: %w", err)
		}
		cps[p] = uint64(seq)
	}
	return cps, rows.Err()
}

// Parked implements [readmodel.Store].
func (s *Store) Parked(ctx context.Context, projection string) ([]readmodel.ParkedEvent, error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, s.q.parked, projection)
	if err != nil {
		return nil, fmt.Errorf("sqlite: parked: %w", err)
	}
	defer rows.Close()
	var out []readmodel.ParkedEvent
	for rows.Next() {
		var ev readmodel.ParkedEvent
		var id, cause string
		var seq, version, at int64
		if err := rows.Scan(&ev.Partition, &seq, &id, &ev.StreamID, &version, &ev.Name, &ev.Payload, &ev.Metadata,
			&cause, &ev.Reason, &ev.Attempts, &at); err != nil {
			return nil, fmt.Errorf("sqlite: parked: %w", err)
		}
		ev.Sequence, ev.StreamVersion, ev.Cause = uint64(seq), uint64(version), readmodel.Cause(cause)
		ev.EventID, _ = uuid.Parse(id)
		ev.ParkedAt = time.Unix(0, at).UTC()
		out = append(out, ev)
	}
	return out, rows.Err()
}

// Begin implements [readmodel.Store].
func (s *Store) Begin(ctx context.Context, projection string) (readmodel.Tx[*sql.Tx], error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return nil, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: begin: %w", err)
	}
	return &Tx{s: s, tx: tx, projection: projection}, nil
}

// RecordServer implements [readmodel.ServerRecorder].
func (s *Store) RecordServer(ctx context.Context, projection, id string) (string, error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return "", err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("sqlite: record server: %w", err)
	}
	defer tx.Rollback()
	var got string
	if _, err := tx.ExecContext(ctx, s.q.insertServer, projection, id); err != nil {
		return "", fmt.Errorf("sqlite: record server: %w", err)
	}
	if err := tx.QueryRowContext(ctx, s.q.server, projection).Scan(&got); err != nil {
		return "", fmt.Errorf("sqlite: record server: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return "", fmt.Errorf("sqlite: record server: %w", err)
	}
	return got, nil
}

// Reset implements [readmodel.Store]: drop, the checkpoints and the parked
// events go in one transaction.
func (s *Store) Reset(ctx context.Context, projection string, drop func(ctx context.Context, tx *sql.Tx) error) error {
	if err := readmodel.ValidateName(projection); err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	defer tx.Rollback()
	if drop != nil {
		if err := drop(ctx, tx); err != nil {
			return err
		}
	}
	for _, q := range []string{s.q.resetCP, s.q.resetParked, s.q.resetServer} {
		if _, err := tx.ExecContext(ctx, q, projection); err != nil {
			return fmt.Errorf("sqlite: reset: %w", err)
		}
	}
	return tx.Commit()
}

// SetActive implements [readmodel.Switcher].
func (s *Store) SetActive(ctx context.Context, name, projection string) error {
	return switcher.Set(ctx, "sqlite", name, projection, func(ctx context.Context, name, projection string) error {
		_, err := s.db.ExecContext(ctx, s.q.setActive, name, projection)
		return err
	})
}

// Active implements [readmodel.Switcher].
func (s *Store) Active(ctx context.Context, name string) (string, error) {
	return switcher.Get(ctx, "sqlite", name, sql.ErrNoRows, func(ctx context.Context, name string) (p string, err error) {
		err = s.db.QueryRowContext(ctx, s.q.active, name).Scan(&p)
		return p, err
	})
}

// Tx is a batch transaction of a [Store].
type Tx struct {
	s          *Store
	tx         *sql.Tx
	projection string
}

// Handle implements [readmodel.Tx]: every handler writes through the one
// *sql.Tx.
func (t *Tx) Handle(readmodel.Position) *sql.Tx { return t.tx }

// Park implements [readmodel.Tx].
func (t *Tx) Park(ctx context.Context, ev readmodel.ParkedEvent) error {
	_, err := t.tx.ExecContext(ctx, t.s.q.park, t.projection, ev.Partition, int64(ev.Sequence), ev.EventID.String(),
		ev.StreamID, int64(ev.StreamVersion), ev.Name, ev.Payload, ev.Metadata, string(ev.Cause), ev.Reason,
		ev.Attempts, ev.ParkedAt.UnixNano())
	if err != nil {
		return fmt.Errorf("sqlite: park: %w", err)
	}
	return nil
}

// Commit implements [readmodel.Tx]: each advance is a compare-and-set on
// the checkpoint row (an UPDATE guarded by the previous sequence, or an
// INSERT that must not find a row), and must affect exactly one row.
func (t *Tx) Commit(ctx context.Context, advances []readmodel.Advance) error {
	for _, a := range advances {
		var res sql.Result
		var err error
		if a.Prev < 0 {
			res, err = t.tx.ExecContext(ctx, t.s.q.insertCP, t.projection, a.Partition, int64(a.Next))
		} else {
			res, err = t.tx.ExecContext(ctx, t.s.q.updateCP, int64(a.Next), t.projection, a.Partition, a.Prev)
		}
		if err != nil {
			return fmt.Errorf("sqlite: checkpoint: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: checkpoint: %w", err)
		} else if n != 1 {
			return &readmodel.ConflictError{Projection: t.projection, Partition: a.Partition, Expected: a.Prev}
		}
	}
	if err := t.tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}

// Rollback implements [readmodel.Tx].
func (t *Tx) Rollback(ctx context.Context) error {
	if err := t.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("sqlite: rollback: %w", err)
	}
	return nil
}
