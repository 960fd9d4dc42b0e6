package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/uuid"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/internal/wholemodel"
)

// ErrClosed is returned after [Store.Close]. It matches esmill.ErrClosed.
var ErrClosed error = &esmill.ClosedError{Text: "file: store closed"}

// Config configures a [Store].
type Config[M any] struct {
	// Dir holds the projections' files; it is created if missing.
	// Required.
	Dir string
	// Format is codec.CBOR (compact; the zero value and default) or
	// codec.JSON (indented, readable).
	Format codec.Format
	// New returns a projection's empty read model (make its maps here).
	// Default: the zero M.
	New func() M
	// NoSync skips the fsyncs: faster, and still atomic against a crash
	// of the process, but not of the machine. Default: false.
	NoSync bool
}

func (c *Config[M]) setDefaults() {
	if c.New == nil {
		c.New = func() M { var m M; return m }
	}
}

// Validate reports every problem of c.
func (c Config[M]) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("file: Dir is required"))
	}
	if c.Format != codec.JSON && c.Format != codec.CBOR {
		errs = append(errs, fmt.Errorf("file: unknown Format %v", c.Format))
	}
	return errors.Join(errs...)
}

// Store keeps read models of type M in files, one per projection. It
// implements readmodel.Store[*Tx[M]] and readmodel.Switcher, and its
// [Store.Leases] a lease.Store. Several stores, in one process or in
// several, may share a directory (see the package documentation).
type Store[M any] struct {
	cfg Config[M]
	ext string

	mu     sync.Mutex
	closed bool
	projs  map[string]*projection[M]

	// fault, when set, runs before each step of an atomic replace
	// ("write", "fsync", "rename", "dirsync") and fails that step with its
	// error: the seam through which tests make a disk fail
	// (export_test.go). Only tests set it.
	fault func(step string) error
}

// projection is this store's copy of a projection's committed state, as
// of the commit named by commit.
type projection[M any] struct {
	raw   []byte // the committed model, encoded
	model M      // the committed model, decoded
	wholemodel.Committed
	// commit names the commit the copy holds (see sync.go); "" when the
	// copy must be read again.
	commit string
	// swept is set once stale temporary files have been removed.
	swept bool
}

// Open returns a store over cfg.Dir.
func Open[M any](cfg Config[M]) (*Store[M], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("file: %w", err)
	}
	ext := ".json"
	if cfg.Format == codec.CBOR {
		ext = ".cbor"
	}
	return &Store[M]{cfg: cfg, ext: ext, projs: make(map[string]*projection[M])}, nil
}

// Path returns the file of a projection.
func (s *Store[M]) Path(projection string) string {
	return filepath.Join(s.cfg.Dir, projection+s.ext)
}

// Close ends the store: later calls fail with [ErrClosed]. It is
// idempotent.
func (s *Store[M]) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.projs = nil
	return nil
}

// document is a projection's file. The model is kept encoded, so that it
// is encoded once per commit.
type document struct {
	Projection  string            `json:"projection" cbor:"projection"`
	Checkpoints map[string]uint64 `json:"checkpoints" cbor:"checkpoints"`
	Parked      []parkedDoc       `json:"parked,omitempty" cbor:"parked,omitempty"`
	Resolved    []resolvedDoc     `json:"resolved,omitempty" cbor:"resolved,omitempty"`
	Server      string            `json:"server,omitempty" cbor:"server,omitempty"`
	Model       json.RawMessage   `json:"model" cbor:"-"`
	ModelCBOR   cbor.RawMessage   `json:"-" cbor:"model"`
}

type parkedDoc struct {
	Partition     uint16    `json:"partition" cbor:"partition"`
	Sequence      uint64    `json:"sequence" cbor:"sequence"`
	EventID       uuid.UUID `json:"event_id" cbor:"event_id"`
	StreamID      string    `json:"stream_id" cbor:"stream_id"`
	StreamVersion uint64    `json:"stream_version" cbor:"stream_version"`
	Name          string    `json:"name" cbor:"name"`
	Payload       []byte    `json:"payload,omitempty" cbor:"payload,omitempty"`
	Metadata      []byte    `json:"metadata,omitempty" cbor:"metadata,omitempty"`
	Cause         string    `json:"cause" cbor:"cause"`
	Reason        string    `json:"reason" cbor:"reason"`
	Attempts      int       `json:"attempts" cbor:"attempts"`
	ParkedAt      int64     `json:"parked_at_unix_nano" cbor:"parked_at_unix_nano"`
}

// resolvedDoc is a parked event that was replayed or skipped.
type resolvedDoc struct {
	parkedDoc
	Action     string `json:"action" cbor:"action"`
	By         string `json:"by,omitempty" cbor:"by,omitempty"`
	Note       string `json:"note,omitempty" cbor:"note,omitempty"`
	ResolvedAt int64  `json:"resolved_at_unix_nano" cbor:"resolved_at_unix_nano"`
}

func toParkedDoc(ev readmodel.ParkedEvent) parkedDoc {
	return parkedDoc{
		Partition: ev.Partition, Sequence: ev.Sequence, EventID: ev.EventID, StreamID: ev.StreamID,
		StreamVersion: ev.StreamVersion, Name: ev.Name, Payload: ev.Payload, Metadata: ev.Metadata,
		Cause: string(ev.Cause), Reason: ev.Reason, Attempts: ev.Attempts, ParkedAt: ev.ParkedAt.UnixNano(),
	}
}

func (d parkedDoc) event() readmodel.ParkedEvent {
	return readmodel.ParkedEvent{
		Position: readmodel.Position{Partition: d.Partition, Sequence: d.Sequence}, EventID: d.EventID,
		StreamID: d.StreamID, StreamVersion: d.StreamVersion, Name: d.Name, Payload: d.Payload,
		Metadata: d.Metadata, Cause: readmodel.Cause(d.Cause), Reason: d.Reason, Attempts: d.Attempts,
		ParkedAt: time.Unix(0, d.ParkedAt).UTC(),
	}
}

func (s *Store[M]) load(name string) (*projection[M], error) {
	p := &projection[M]{Committed: wholemodel.NewCommitted()}
	b, err := os.ReadFile(s.Path(name))
	if errors.Is(err, os.ErrNotExist) {
		p.model = s.cfg.New()
		p.raw, err = codec.Marshal(s.cfg.Format, p.model)
		if err != nil {
			return nil, fmt.Errorf("file: encode model: %w", err)
		}
		return p, nil
	}
	if err != nil {
		return nil, fmt.Errorf("file: %w", err)
	}
	var doc document
	if err := codec.Unmarshal(s.cfg.Format, b, &doc); err != nil {
		return nil, fmt.Errorf("file: %s: %w", s.Path(name), err)
	}
	p.raw = doc.Model
	if s.cfg.Format == codec.CBOR {
		p.raw = doc.ModelCBOR
	}
	if p.model, err = s.decode(p.raw); err != nil {
		return nil, fmt.Errorf("file: %s: model: %w", s.Path(name), err)
	}
	for k, v := range doc.Checkpoints {
		n, err := strconv.ParseUint(k, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("file: %s: checkpoint partition %q: %w", s.Path(name), k, err)
		}
		p.Checkpoints[uint16(n)] = v
	}
	for _, d := range doc.Parked {
		ev := d.event()
		p.Parked[ev.Position] = ev
	}
	for _, d := range doc.Resolved {
		ev := readmodel.ResolvedEvent{ParkedEvent: d.event(), Resolution: readmodel.Resolution{
			Action: readmodel.Action(d.Action), By: d.By, Note: d.Note, At: time.Unix(0, d.ResolvedAt).UTC(),
		}}
		p.Resolved[ev.Position] = ev
	}
	p.Server = doc.Server
	return p, nil
}

func (s *Store[M]) decode(raw []byte) (M, error) {
	m := s.cfg.New()
	err := codec.Unmarshal(s.cfg.Format, raw, &m)
	return m, err
}

// Read calls fn with the projection's committed read model, as of the
// latest commit of any process, under the store's lock: fn must not keep
// it or change it. Read waits while a transaction of the projection is in
// flight (in this process or another).
func (s *Store[M]) Read(name string, fn func(m M)) error {
	return s.view(context.Background(), name, func(p *projection[M]) { fn(p.model) })
}

// Checkpoints implements [readmodel.Store].
func (s *Store[M]) Checkpoints(ctx context.Context, name string) (cps map[uint16]uint64, err error) {
	err = s.view(ctx, name, func(p *projection[M]) { cps = maps.Clone(p.Checkpoints) })
	return cps, err
}

// Parked implements [readmodel.Store].
func (s *Store[M]) Parked(ctx context.Context, name string) (evs []readmodel.ParkedEvent, err error) {
	err = s.view(ctx, name, func(p *projection[M]) { evs = wholemodel.SortedParked(p.Parked) })
	return evs, err
}

// Resolved implements [readmodel.Store].
func (s *Store[M]) Resolved(ctx context.Context, name string) (evs []readmodel.ResolvedEvent, err error) {
	err = s.view(ctx, name, func(p *projection[M]) { evs = wholemodel.SortedResolved(p.Resolved) })
	return evs, err
}

// RecordServer implements [readmodel.ServerRecorder]: the identity is
// kept in the projection's file.
func (s *Store[M]) RecordServer(ctx context.Context, projection, id string) (string, error) {
	unlock, err := s.lock(ctx, projection, false)
	if err != nil {
		return "", err
	}
	defer unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.syncLocked(projection, true)
	if err != nil {
		return "", err
	}
	if p.Server != "" {
		return p.Server, nil
	}
	next := p.Next(nil, nil)
	next.Server = id
	if err := s.writeLocked(projection, p, next, p.raw, p.model); err != nil {
		return "", err
	}
	return id, nil
}

// Begin implements [readmodel.Store]: it takes the projection's lock
// (waiting while another transaction, of this process or another, holds
// it) and holds it until Commit or Rollback; the transaction works on a
// copy of the latest committed model.
func (s *Store[M]) Begin(ctx context.Context, projection string) (readmodel.Tx[*Tx[M]], error) {
	unlock, err := s.lock(ctx, projection, false)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	p, err := s.syncLocked(projection, true)
	var raw []byte
	var gen uint64
	if err == nil {
		raw, gen = p.raw, p.Gen
	}
	s.mu.Unlock()
	if err != nil {
		unlock()
		return nil, err
	}
	m, err := s.decode(raw)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("file: decode model: %w", err)
	}
	return &Tx[M]{s: s, unlock: unlock, b: wholemodel.Batch[M]{Projection: projection, Model: m, Gen: gen}}, nil
}

// Reset implements [readmodel.Store]: the file is removed and the model
// goes back to Config.New; drop, if not nil, runs on it first and its
// result is kept.
func (s *Store[M]) Reset(ctx context.Context, projection string, drop func(ctx context.Context, tx *Tx[M]) error) error {
	tx := &Tx[M]{s: s, b: wholemodel.Batch[M]{Projection: projection, Model: s.cfg.New()}}
	if drop != nil {
		if err := drop(ctx, tx); err != nil {
			return err
		}
	}
	raw, err := codec.Marshal(s.cfg.Format, tx.b.Model)
	if err != nil {
		return fmt.Errorf("file: encode model: %w", err)
	}
	unlock, err := s.lock(ctx, projection, false)
	if err != nil {
		return err
	}
	defer unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.syncLocked(projection, true)
	if err != nil {
		return err
	}
	commit, err := s.newCommit(projection)
	if err != nil {
		return err
	}
	if err := os.Remove(s.Path(projection)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("file: %w", err)
	}
	if !s.cfg.NoSync {
		if err := syncDir(s.cfg.Dir); err != nil {
			return err
		}
	}
	gen := p.Gen
	p.raw, p.model = raw, tx.b.Model
	p.Committed = wholemodel.NewCommitted()
	p.Gen = gen + 1
	p.commit = commit
	return nil
}
