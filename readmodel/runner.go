package readmodel

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/esmill/esmill/sierradb"
)

// Runner runs one projection: it subscribes to every partition from the
// projection's checkpoints, decodes the events into the entity types of its
// handlers, applies them in batches through the store, and commits each
// batch's read-model writes with the checkpoint advance in one store
// transaction. The subscription is acknowledged only after the commit.
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

	prog progress
	park parking[T]
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
	return &Runner[T]{
		cfg:   cfg,
		disp:  disp,
		done:  make(chan struct{}),
		ready: make(chan struct{}),
		live:  make(chan struct{}),
		prog:  progress{applied: make(map[uint16]uint64), heads: make(map[uint16]int64), changed: make(chan struct{})},
	}, nil
}

// Name returns the projection's name.
func (r *Runner[T]) Name() string { return r.cfg.Name }

// Run runs the projection until ctx is cancelled, [Runner.Close] is called
// (both return nil), or a fatal error: a [*PoisonError] under [Stop], an
// [ErrCheckpointConflict] (another runner advanced the projection), store
// failures beyond [Config.StoreRetries], or the end of the subscription.
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
// idempotent; a runner never started is closed at once.
func (r *Runner[T]) Close() error {
	r.closeOnce.Do(func() {
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
// partitions as they were when it started.
func (r *Runner[T]) Live() <-chan struct{} { return r.live }

// Err returns the error that ended the runner: nil while it runs and after
// a deliberate stop.
func (r *Runner[T]) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *Runner[T]) run(ctx context.Context) error {
	cfg := &r.cfg
	cps, err := cfg.Store.Checkpoints(ctx, cfg.Name)
	if err != nil {
		return fmt.Errorf("readmodel: %s: load checkpoints: %w", cfg.Name, err)
	}
	count, err := cfg.Client.PartitionCount(ctx)
	if err != nil {
		return fmt.Errorf("readmodel: %s: %w", cfg.Name, err)
	}
	parts := make([]uint16, count)
	for i := range parts {
		parts[i] = uint16(i)
	}
	heads, err := cfg.Client.PartitionSequences(ctx, parts)
	if err != nil {
		return fmt.Errorf("readmodel: %s: read partition heads: %w", cfg.Name, err)
	}
	var orphans []string
	if cfg.Hold == HoldEntity {
		if orphans, err = r.loadHeld(ctx); err != nil {
			return err
		}
	}
	r.prog.mu.Lock()
	r.prog.partitions = parts
	r.prog.applied = cps
	r.prog.heads = heads
	r.prog.targets = maps.Clone(heads)
	r.prog.headsAt = cfg.Now()
	r.prog.state = CatchingUp
	r.updateLiveLocked()
	r.prog.mu.Unlock()

	lagCtx, stopLag := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stopLag()
		wg.Wait()
	}()
	buf := make([]*item[T], 0, cfg.BatchSize)
	for first := true; ; first = false {
		// Subscribe from the checkpoints (again, after a resync).
		r.prog.mu.Lock()
		from := make(map[uint16]uint64, len(r.prog.applied))
		for p, s := range r.prog.applied {
			from[p] = s + 1
		}
		r.prog.mu.Unlock()
		sub, err := cfg.Client.SubscribePartitions(ctx, sierradb.PartitionSubscription{
			Partitions: parts, From: from, Default: sierradb.StartBeginning, Window: cfg.Window,
		})
		if err != nil {
			return fmt.Errorf("readmodel: %s: subscribe: %w", cfg.Name, err)
		}
		if first {
			close(r.ready)
			cfg.Logger.Info("readmodel: projection started", "projection", cfg.Name, "checkpoints", len(cps))
			if cfg.LagInterval > 0 {
				wg.Go(func() { r.refreshHeads(lagCtx) })
			}
			if cfg.Hold == HoldEntity {
				wg.Go(func() { r.keepHeld(lagCtx, orphans) })
			}
		}
		err = r.consume(ctx, sub, from, buf)
		sub.Close()
		if !errors.Is(err, errResync) {
			return err
		}
	}
}

// errResync asks run to subscribe again from the checkpoints.
var errResync = errors.New("readmodel: resync")

// consume applies the subscription's events until an error. It checks
// that every partition's sequences arrive gapless and in order (SierraDB
// numbers them so): a duplicate is dropped, and a gap ends the
// subscription with errResync after the events before it are committed.
func (r *Runner[T]) consume(ctx context.Context, sub *sierradb.Subscription, next map[uint16]uint64, buf []*item[T]) error {
	for {
		batch, gap, err := r.collect(ctx, sub, next, buf[:0])
		if err != nil {
			return err
		}
		if len(batch) > 0 {
			if err := r.process(ctx, sub, batch); err != nil {
				return err
			}
		}
		if gap {
			return errResync
		}
	}
}

// collect waits for a first event, then gathers more until BatchSize or
// until BatchTimeout has passed since the first. next holds the sequence
// expected next per partition (absent: 0). It reports a gap when an event
// comes after a missing one; that event is dropped, to be delivered again.
func (r *Runner[T]) collect(ctx context.Context, sub *sierradb.Subscription, next map[uint16]uint64, batch []*item[T]) ([]*item[T], bool, error) {
	events := sub.Events()
	// add takes an event; it reports false on a gap.
	add := func(ev sierradb.Event) bool {
		want := next[ev.PartitionID]
		switch {
		case ev.PartitionSequence < want:
			r.cfg.Logger.Warn("readmodel: duplicate event dropped", "projection", r.cfg.Name,
				"partition", ev.PartitionID, "sequence", ev.PartitionSequence, "expected", want)
			sub.Ack(ev)
			return true
		case ev.PartitionSequence > want:
			r.cfg.Logger.Warn("readmodel: gap in a partition; subscribing again", "projection", r.cfg.Name,
				"partition", ev.PartitionID, "sequence", ev.PartitionSequence, "expected", want)
			r.prog.mu.Lock()
			r.prog.nResyncs++
			r.prog.mu.Unlock()
			return false
		}
		next[ev.PartitionID] = want + 1
		batch = append(batch, r.prepare(ev))
		return true
	}
	ended := func() error { return &SubscriptionEndedError{Projection: r.cfg.Name, Err: sub.Err()} }
	for len(batch) == 0 {
		select {
		case ev, ok := <-events:
			if !ok {
				return nil, false, ended()
			}
			if !add(ev) {
				return batch, true, nil
			}
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for len(batch) < r.cfg.BatchSize {
		select {
		case ev, ok := <-events:
			if !ok {
				return batch, false, nil
			}
			if !add(ev) {
				return batch, true, nil
			}
			continue
		default:
		}
		if timer == nil {
			timer = time.NewTimer(r.cfg.BatchTimeout)
		}
		select {
		case ev, ok := <-events:
			if !ok {
				return batch, false, nil
			}
			if !add(ev) {
				return batch, true, nil
			}
		case <-timer.C:
			return batch, false, nil
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	return batch, false, nil
}
