package esadmin

import (
	"context"
	"errors"
	"fmt"

	"github.com/esmill/esmill/reactor"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/sierradb"
)

// Kind says what a [Target] is.
type Kind string

const (
	// KindProjection is a read-model projection (readmodel.Runner).
	KindProjection Kind = "projection"
	// KindReactor is a process manager (reactor.Reactor).
	KindReactor Kind = "reactor"
	// KindStored is a projection or reactor found in a store, whose code
	// this program does not link: its status and parked events can be
	// read, and parked events skipped, but not replayed.
	KindStored Kind = "stored"
)

// Target is a projection or reactor the admin commands act on: made by
// [Projection], [Reactor] or [Stored].
type Target struct {
	name string
	kind Kind
	open func(client *sierradb.Client) (*opened, error)
}

// Name returns the projection's or reactor's name.
func (t Target) Name() string { return t.name }

// Kind returns what the target is.
func (t Target) Kind() Kind { return t.kind }

// parkedAdmin is what the commands use of a *readmodel.Admin[T].
type parkedAdmin interface {
	List(ctx context.Context) ([]readmodel.ParkedEvent, error)
	Show(ctx context.Context, pos readmodel.Position) (readmodel.ParkedEvent, error)
	Replay(ctx context.Context, pos readmodel.Position, by, note string) (readmodel.Outcome, error)
	Skip(ctx context.Context, pos readmodel.Position, by, note string) (readmodel.Outcome, error)
}

// runner is what a rebuild uses of a *readmodel.Runner[T].
type runner interface {
	Start() error
	Close() error
	Sync(ctx context.Context) error
	Status() readmodel.Status
}

// opened is a target bound to a SierraDB client.
type opened struct {
	checkpoints func(ctx context.Context) (map[uint16]uint64, error)
	admin       parkedAdmin
	// reset and newRunner are nil for targets that cannot be reset or
	// rebuilt.
	reset     func(ctx context.Context) error
	newRunner func() (runner, error)
	close     func()
}

// Projection registers a projection: cfg is its runner's configuration,
// handlers included (cfg.Client may be nil: the admin sets the client the
// flags name). drop removes its read model when it is reset or rebuilt
// (it is Store.Reset's drop: nil for stores that own the model, memory
// and file). With it, parked events can be replayed and the projection
// reset and rebuilt.
func Projection[T any](cfg readmodel.Config[T], drop func(ctx context.Context, tx T) error) Target {
	return Target{name: cfg.Name, kind: KindProjection, open: func(client *sierradb.Client) (*opened, error) {
		if cfg.Client == nil {
			cfg.Client = client
		}
		ad, err := readmodel.NewAdmin(cfg)
		if err != nil {
			return nil, err
		}
		return &opened{
			checkpoints: func(ctx context.Context) (map[uint16]uint64, error) { return cfg.Store.Checkpoints(ctx, cfg.Name) },
			admin:       ad,
			reset:       func(ctx context.Context) error { return cfg.Store.Reset(ctx, cfg.Name, drop) },
			newRunner: func() (runner, error) {
				c := cfg
				c.Leases, c.Group, c.Instance, c.LeaseTTL = nil, "", "", 0
				return readmodel.New(c)
			},
			close: func() {},
		}, nil
	}}
}

// Reactor registers a reactor: cfg is its configuration, handlers and
// executor included (cfg.Client may be nil: the admin sets the client the
// flags name). With it, its parked events can be replayed (running their
// commands, each once per event). A reactor is not reset or rebuilt: its
// commands are not a read model.
func Reactor[T any](cfg reactor.Config[T]) Target {
	return Target{name: cfg.Name, kind: KindReactor, open: func(client *sierradb.Client) (*opened, error) {
		if cfg.Client == nil {
			cfg.Client = client
		}
		r, err := reactor.New(cfg)
		if err != nil {
			return nil, err
		}
		return &opened{
			checkpoints: func(ctx context.Context) (map[uint16]uint64, error) { return cfg.Store.Checkpoints(ctx, cfg.Name) },
			admin:       r.Admin(),
			close:       func() { r.Close() },
		}, nil
	}}
}

// Stored is a projection or reactor of store whose code this program does
// not link: its status and parked events can be read, and parked events
// skipped, but not replayed ([readmodel.ErrNoHandlers]), reset or
// rebuilt.
func Stored[T any](name string, store readmodel.Store[T]) Target {
	return Target{name: name, kind: KindStored, open: func(client *sierradb.Client) (*opened, error) {
		ad, err := readmodel.NewAdmin(readmodel.Config[T]{Name: name, Store: store, Client: client})
		if err != nil {
			return nil, err
		}
		return &opened{
			checkpoints: func(ctx context.Context) (map[uint16]uint64, error) { return store.Checkpoints(ctx, name) },
			admin:       ad,
			close:       func() {},
		}, nil
	}}
}

// ErrUnknownTarget: no registered projection or reactor, and none in the
// store the flags name, has the name given.
var ErrUnknownTarget = errors.New("esadmin: unknown projection")

// ErrNotRegistered: the command needs the projection's code (its
// handlers and how to drop its read model), which this program does not
// register.
var ErrNotRegistered = errors.New("esadmin: projection not registered in this program")

// targets returns the registered targets and those of the flags' store,
// by name, in order: registered first.
func (x *exec) targets(ctx context.Context) ([]Target, error) {
	out := append([]Target(nil), x.app.Targets...)
	seen := make(map[string]bool)
	for _, t := range out {
		seen[t.name] = true
	}
	st, ok, err := x.projectionStore(ctx)
	if err != nil || !ok {
		return out, err
	}
	names, err := st.names(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if !seen[n] {
			out = append(out, st.target(n))
		}
	}
	return out, nil
}

// target returns the target named name: a registered one, else one of
// the flags' store (which need not list it yet).
func (x *exec) target(ctx context.Context, name string) (Target, error) {
	if name == "" {
		return Target{}, x.usage(errors.New("--projection is required"))
	}
	for _, t := range x.app.Targets {
		if t.name == name {
			return t, nil
		}
	}
	if err := readmodel.ValidateName(name); err != nil {
		return Target{}, err
	}
	st, ok, err := x.projectionStore(ctx)
	if err != nil {
		return Target{}, err
	}
	if !ok {
		return Target{}, fmt.Errorf("%w %q: this program registers none by that name, and no store is named (--postgres or --sqlite)", ErrUnknownTarget, name)
	}
	return st.target(name), nil
}

// open binds t to the SierraDB client: connecting when needClient, or
// else when an address is given (a replay reads the event back from
// SierraDB when it can).
func (x *exec) open(ctx context.Context, t Target, needClient bool) (*opened, error) {
	var client *sierradb.Client
	if needClient || t.kind == KindReactor || x.setting(x.o.sierradb, EnvSierraDB) != "" {
		c, err := x.sierra(ctx)
		if err != nil {
			return nil, err
		}
		client = c
	}
	o, err := t.open(client)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", t.kind, t.name, err)
	}
	x.closers = append(x.closers, o.close)
	return o, nil
}
