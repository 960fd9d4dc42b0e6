package reactor

import (
	"github.com/esmill/esmill/readmodel"
)

// Reactor consumes events with typed handlers that run commands caused by
// them. It is a readmodel.Runner (its methods are the runner's: Start,
// Run, Close, Status, Sync, WaitFor, Replay, Skip, Admin, ...) whose
// handlers act instead of writing a read model.
type Reactor[T any] struct {
	*readmodel.Runner[T]
	x *shared
}

// New returns a reactor for cfg. It does not start it.
func New[T any](cfg Config[T]) (*Reactor[T], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	x := &shared{name: cfg.Name, executor: cfg.Executor, bus: cfg.Bus}
	hs, err := cfg.handlers(x)
	if err != nil {
		return nil, err
	}
	r, err := readmodel.New(cfg.runnerConfig(hs))
	if err != nil {
		return nil, err
	}
	return &Reactor[T]{Runner: r, x: x}, nil
}

// Stats counts the commands of a reactor's handlers since it was built.
type Stats struct {
	// Executed counts commands that ran (through Execute) and wrote
	// their events.
	Executed uint64
	// Idempotent counts commands the entity answered as already handled
	// for their causing event: an event delivered again, after a crash
	// or a failed batch, or replayed.
	Idempotent uint64
	// Sent counts commands published on the bus (Send).
	Sent uint64
	// Failed counts commands that returned an error, rejections
	// included.
	Failed uint64
}

// Stats returns the reactor's command counts.
func (r *Reactor[T]) Stats() Stats {
	return Stats{Executed: r.x.executed.Load(), Idempotent: r.x.idempotent.Load(), Sent: r.x.sent.Load(), Failed: r.x.failed.Load()}
}
