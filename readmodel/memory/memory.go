package memory

import (
	"context"
	"maps"
	"sync"

	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/internal/wholemodel"
)

// Config configures a [Store] of read models of type M.
type Config[M any] struct {
	// New returns a projection's empty read model (make its maps here).
	// Default: the zero M.
	New func() M
	// Clone returns a deep copy of a model: each transaction works on one,
	// so that a rollback leaves the committed model untouched.
	// Default: a CBOR round trip, which copies exported fields only.
	Clone func(M) M
}

// Store keeps read models of type M in memory, one per projection. It
// implements readmodel.Store[*Tx[M]] and readmodel.Switcher. The zero value
// is not usable; call [New].
type Store[M any] struct {
	cfg Config[M]

	mu     sync.Mutex
	projs  map[string]*projection[M]
	active map[string]string
}

type projection[M any] struct {
	model M
	wholemodel.Committed
}

// New returns an empty store.
func New[M any](cfg Config[M]) *Store[M] {
	if cfg.New == nil {
		cfg.New = func() M { var m M; return m }
	}
	if cfg.Clone == nil {
		newM := cfg.New
		cfg.Clone = func(m M) M {
			b, err := codec.Marshal(codec.CBOR, m)
			if err != nil {
				panic("memory: clone model: " + err.Error())
			}
			c := newM()
			if err := codec.Unmarshal(codec.CBOR, b, &c); err != nil {
				panic("memory: clone model: " + err.Error())
			}
			return c
		}
	}
	return &Store[M]{cfg: cfg, projs: make(map[string]*projection[M]), active: make(map[string]string)}
}

func (s *Store[M]) projLocked(name string) *projection[M] {
	p := s.projs[name]
	if p == nil {
		p = &projection[M]{model: s.cfg.New(), Committed: wholemodel.NewCommitted()}
		s.projs[name] = p
	}
	return p
}

// Read calls fn with the projection's committed read model, under the
// store's lock: fn must not keep it or change it.
func (s *Store[M]) Read(projection string, fn func(m M)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s.projLocked(projection).model)
}

// Checkpoints implements [readmodel.Store].
func (s *Store[M]) Checkpoints(ctx context.Context, projection string) (map[uint16]uint64, error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.projLocked(projection).Checkpoints), nil
}

// Parked implements [readmodel.Store].
func (s *Store[M]) Parked(ctx context.Context, projection string) ([]readmodel.ParkedEvent, error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return wholemodel.SortedParked(s.projLocked(projection).Parked), nil
}

// Resolved implements [readmodel.Store].
func (s *Store[M]) Resolved(ctx context.Context, projection string) ([]readmodel.ResolvedEvent, error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return wholemodel.SortedResolved(s.projLocked(projection).Resolved), nil
}

// RecordServer implements [readmodel.ServerRecorder].
func (s *Store[M]) RecordServer(ctx context.Context, projection, id string) (string, error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projLocked(projection)
	if p.Server == "" {
		p.Server = id
	}
	return p.Server, nil
}

// Begin implements [readmodel.Store]: the transaction works on a copy of
// the committed model.
func (s *Store[M]) Begin(ctx context.Context, projection string) (readmodel.Tx[*Tx[M]], error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return nil, err
	}
	s.mu.Lock()
	p := s.projLocked(projection)
	m, gen := p.model, p.Gen
	s.mu.Unlock()
	// The committed model is replaced, not changed in place, so it can be copied
	// outside the lock.
	return &Tx[M]{s: s, b: wholemodel.Batch[M]{Projection: projection, Model: s.cfg.Clone(m), Gen: gen}}, nil
}

// Reset implements [readmodel.Store]: the model goes back to Config.New,
// then drop, if not nil, runs on it and its result is kept.
func (s *Store[M]) Reset(ctx context.Context, projection string, drop func(ctx context.Context, tx *Tx[M]) error) error {
	if err := readmodel.ValidateName(projection); err != nil {
		return err
	}
	tx := &Tx[M]{s: s, b: wholemodel.Batch[M]{Projection: projection, Model: s.cfg.New()}}
	if drop != nil {
		if err := drop(ctx, tx); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.projLocked(projection)
	delete(s.projs, projection)
	p := s.projLocked(projection)
	p.model, p.Gen = tx.b.Model, old.Gen+1
	return nil
}

// SetActive implements [readmodel.Switcher].
func (s *Store[M]) SetActive(ctx context.Context, name, projection string) error {
	if err := readmodel.ValidateName(projection); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active[name] = projection
	return nil
}

// Active implements [readmodel.Switcher].
func (s *Store[M]) Active(ctx context.Context, name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.active[name]
	if !ok {
		return "", readmodel.ErrNoActive
	}
	return p, nil
}

// Tx is a batch transaction of a memory [Store], and the handle its
// handlers write through.
type Tx[M any] struct {
	s *Store[M]
	b wholemodel.Batch[M]
}

// Model returns the transaction's copy of the read model, for the handlers
// to change.
func (t *Tx[M]) Model() *M { return &t.b.Model }

// Projection returns the projection's name.
func (t *Tx[M]) Projection() string { return t.b.Projection }

// Handle implements [readmodel.Tx].
func (t *Tx[M]) Handle(readmodel.Position) *Tx[M] { return t }

// Park implements [readmodel.Tx].
func (t *Tx[M]) Park(ctx context.Context, ev readmodel.ParkedEvent) error { return t.b.Park(ev) }

// Unpark implements [readmodel.Tx].
func (t *Tx[M]) Unpark(ctx context.Context, pos readmodel.Position, r readmodel.Resolution) (readmodel.ParkedEvent, error) {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	return t.b.Unpark(&t.s.projLocked(t.b.Projection).Committed, pos, r)
}

// Commit implements [readmodel.Tx]: the model and the checkpoints are
// swapped in under the store's lock.
func (t *Tx[M]) Commit(ctx context.Context, advances []readmodel.Advance) error {
	if err := t.b.Finish(); err != nil {
		return err
	}
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projLocked(t.b.Projection)
	if err := p.Check(t.b.Projection, t.b.Gen, advances); err != nil {
		return err
	}
	p.Committed = p.Next(advances, &t.b.BatchEvents)
	p.model = t.b.Model
	return nil
}

// Rollback implements [readmodel.Tx].
func (t *Tx[M]) Rollback(ctx context.Context) error {
	t.b.Rollback()
	return nil
}
