package readmodel

import (
	"context"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/esmill/esmill/internal/telemetry"
)

// Runner runs one projection: it subscribes to every partition (or, with
// Config.Leases, to those it holds) from the projection's checkpoints,
// decodes the events into the entity types of its handlers, applies them
// in batches through the store, and commits each batch's read-model writes
// with the checkpoint advance in one store transaction. The subscription
// is acknowledged only after the commit.
//
// Run it with [Runner.Run] (blocking) or [Runner.Start] and [Runner.Close].
// A runner runs once. Its methods are safe for concurrent use.
type Runner[T any] struct {
	cfg  Config[T]
	disp *dispatch[T]

	done  chan struct{}
	ready chan struct{}
	live  chan struct{}

	closeOnce sync.Once

	// mu guards the runner's life: whether it started, its cancellation
	// and the error that ended it. Its progress has a lock of its own.
	mu      sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	err     error

	prog  progress
	park  parking[T]
	share *share
	// serverID is the server's identity as read at start.
	serverID string
	// member is the lease member, nil without Leases; set before ready.
	member memberView

	tracer trace.Tracer
	gauges metric.Registration
}

// memberView is what the runner asks its lease member.
type memberView interface {
	Valid(p int, token uint64) bool
}

// New returns a runner for cfg. It does not start it.
func New[T any](cfg Config[T]) (*Runner[T], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	disp, err := newDispatch(cfg.Handlers)
	if err != nil {
		return nil, err
	}
	r := &Runner[T]{
		cfg:    cfg,
		disp:   disp,
		done:   make(chan struct{}),
		ready:  make(chan struct{}),
		live:   make(chan struct{}),
		prog:   newProgress(),
		share:  newShare(),
		tracer: telemetry.Tracer(cfg.TracerProvider),
	}
	if r.gauges, err = r.registerMetrics(); err != nil {
		return nil, fmt.Errorf("readmodel: metrics: %w", err)
	}
	return r, nil
}

// Name returns the projection's name.
func (r *Runner[T]) Name() string { return r.cfg.Name }

// Run runs the projection until ctx is cancelled, [Runner.Close] is called
// (both return nil), or a fatal error: a [*PoisonError] under [Stop], a
// [*DivergedError] under [StopDiverged], store failures beyond
// [Config.StoreRetries], the end of the subscription, or a lease error
// (such as a [*lease.PartitionCountError]). A checkpoint conflict
// (another instance advanced a partition) is not fatal: the runner reads
// the checkpoints again and goes on.
func (r *Runner[T]) Run(ctx context.Context) error {
	ctx, err := r.begin(ctx)
	if err != nil {
		return err
	}
	err = r.run(ctx)
	return r.finish(ctx, err)
}

// Start runs the projection in a goroutine owned by the runner, until
// [Runner.Close] or a fatal error ([Runner.Done] is then closed and
// [Runner.Err] says why).
func (r *Runner[T]) Start() error {
	ctx, err := r.begin(context.Background())
	if err != nil {
		return err
	}
	go func() { r.finish(ctx, r.run(ctx)) }()
	return nil
}

func (r *Runner[T]) begin(parent context.Context) (context.Context, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if r.started {
		return nil, ErrRunning
	}
	r.started = true
	r.prog.setState(Starting)
	ctx, cancel := context.WithCancel(parent)
	r.cancel = cancel
	return ctx, nil
}

func (r *Runner[T]) finish(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		// Stopped on purpose; whatever failed on the way out is moot.
		err = nil
	}
	r.mu.Lock()
	r.err = err
	r.prog.setState(Stopped)
	r.cancel()
	r.mu.Unlock()
	close(r.done)
	if err != nil {
		r.cfg.Logger.Error("readmodel: projection stopped", "projection", r.cfg.Name, "error", err)
	}
	return err
}

// Close stops the runner and waits until every goroutine it started has
// ended. It returns the error that ended the runner, if any. It is
// idempotent; a runner not started is closed at once (tested:
// TestCloseBeforeStart).
func (r *Runner[T]) Close() error {
	r.closeOnce.Do(func() {
		if r.gauges != nil {
			r.gauges.Unregister()
		}
		r.mu.Lock()
		r.closed = true
		started := r.started
		if r.cancel != nil {
			r.cancel()
		}
		if !started {
			r.prog.setState(Stopped)
			close(r.done)
		}
		r.mu.Unlock()
	})
	<-r.done
	return r.Err()
}

// Done is closed when the runner has stopped.
func (r *Runner[T]) Done() <-chan struct{} { return r.done }

// Live is closed when the runner has first caught up with the heads of the
// partitions it works on as they were when it started or gained them.
// With Config.Leases it waits until the runner holds a partition.
func (r *Runner[T]) Live() <-chan struct{} { return r.live }

// Err returns the error that ended the runner: nil while it runs and after
// a deliberate stop.
func (r *Runner[T]) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}
