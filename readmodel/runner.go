package readmodel

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime/debug"
	"slices"
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

	mu         sync.Mutex
	started    bool
	closed     bool
	cancel     context.CancelFunc
	err        error
	state      State
	partitions []uint16
	applied    map[uint16]uint64
	heads      map[uint16]int64
	targets    map[uint16]int64
	headsAt    time.Time
	nApplied   uint64
	nParked    uint64
	nResyncs   uint64
	progress   chan struct{}
}

// New returns a runner for cfg. It does not start it.
func New[T any](cfg Config[T]) (*Runner[T], error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	disp, err := newDispatch(cfg.Handlers)
	if err != nil {
		return nil, err
	}
	return &Runner[T]{
		cfg:      cfg,
		disp:     disp,
		done:     make(chan struct{}),
		ready:    make(chan struct{}),
		live:     make(chan struct{}),
		applied:  make(map[uint16]uint64),
		heads:    make(map[uint16]int64),
		progress: make(chan struct{}),
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
	r.state = Starting
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
	r.state = Stopped
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
			r.state = Stopped
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
	r.mu.Lock()
	r.partitions = parts
	r.applied = cps
	r.heads = heads
	r.targets = maps.Clone(heads)
	r.headsAt = cfg.Now()
	r.state = CatchingUp
	r.updateLiveLocked()
	r.mu.Unlock()

	lagCtx, stopLag := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stopLag()
		wg.Wait()
	}()
	buf := make([]*item[T], 0, cfg.BatchSize)
	for first := true; ; first = false {
		// Subscribe from the checkpoints (again, after a resync).
		r.mu.Lock()
		from := make(map[uint16]uint64, len(r.applied))
		for p, s := range r.applied {
			from[p] = s + 1
		}
		r.mu.Unlock()
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
			r.mu.Lock()
			r.nResyncs++
			r.mu.Unlock()
			return false
		}
		next[ev.PartitionID] = want + 1
		batch = append(batch, r.prepare(ev))
		return true
	}
	ended := func() error {
		if err := sub.Err(); err != nil {
			return fmt.Errorf("readmodel: %s: %w: %w", r.cfg.Name, ErrSubscriptionEnded, err)
		}
		return fmt.Errorf("readmodel: %s: %w", r.cfg.Name, ErrSubscriptionEnded)
	}
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

// item is one event of a batch, prepared for applying.
type item[T any] struct {
	ev     sierradb.Event
	pos    Position
	calls  []func(ctx context.Context, tx T) error // nil: nothing to apply
	poison *ParkedEvent
	err    error // why it is poison
}

func (r *Runner[T]) prepare(ev sierradb.Event) *item[T] {
	it := &item[T]{ev: ev, pos: Position{ev.PartitionID, ev.PartitionSequence}}
	m := Meta{
		Projection: r.cfg.Name, Position: it.pos, EventID: ev.ID, TransactionID: ev.TransactionID,
		StreamID: ev.StreamID, StreamVersion: ev.StreamVersion, Name: ev.Name, Timestamp: ev.Timestamp,
	}
	c := r.disp.cats[Category(ev.StreamID)]
	if c == nil {
		for _, h := range r.disp.other {
			call := h.rawCall
			it.calls = append(it.calls, func(ctx context.Context, tx T) error { return call(ctx, tx, ev, m) })
		}
		return it
	}
	if !c.known[ev.Name] {
		if r.cfg.UnknownEvents == PoisonUnknown {
			it.err = fmt.Errorf("event name %q is not registered in entity type %q", ev.Name, c.kind.category)
			it.poison = r.parked(it, CauseUnknown, it.err.Error(), 0)
		}
		return it
	}
	if !c.wants(ev.Name) {
		return it
	}
	d, err := c.kind.decode(ev)
	if err != nil {
		it.err = err
		it.poison = r.parked(it, CauseDecode, err.Error(), 0)
		return it
	}
	m.Metadata = d.meta
	for _, h := range c.handlers(d) {
		call := h.call
		it.calls = append(it.calls, func(ctx context.Context, tx T) error { return call(ctx, tx, d, m) })
	}
	return it
}

func (r *Runner[T]) parked(it *item[T], cause Cause, reason string, attempts int) *ParkedEvent {
	ev := it.ev
	return &ParkedEvent{
		Position: it.pos, EventID: ev.ID, StreamID: ev.StreamID, StreamVersion: ev.StreamVersion,
		Name: ev.Name, Payload: ev.Payload, Metadata: ev.Metadata,
		Cause: cause, Reason: reason, Attempts: attempts, ParkedAt: r.cfg.Now().UTC(),
	}
}

// handlerFailure is a handler error at one item of a batch.
type handlerFailure struct {
	index int
	err   error
}

func (e *handlerFailure) Error() string { return e.err.Error() }

// process applies the batch, retrying and parking as configured, until it
// is committed or a fatal error.
func (r *Runner[T]) process(ctx context.Context, sub *sierradb.Subscription, items []*item[T]) error {
	cfg := &r.cfg
	failures := make(map[Position]int)
	storeFails := 0
	backoff := cfg.RetryBackoff
	wait := func() error {
		t := time.NewTimer(backoff)
		defer t.Stop()
		backoff = min(backoff*2, cfg.MaxRetryBackoff)
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for len(items) > 0 {
		cut := len(items)
		if cfg.OnPoison == Stop {
			for i, it := range items {
				if it.poison != nil {
					cut = i
					break
				}
			}
			if cut == 0 {
				return &PoisonError{Projection: cfg.Name, Event: *items[0].poison, Err: items[0].err}
			}
		}
		batch := items[:cut]
		err := r.commit(ctx, batch)
		var hf *handlerFailure
		switch {
		case err == nil:
			r.committed(sub, batch)
			items = items[cut:]
			storeFails, backoff = 0, cfg.RetryBackoff
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &hf):
			if hf.index > 0 {
				// Commit what applied cleanly before the failing event.
				if err := r.process(ctx, sub, items[:hf.index]); err != nil {
					return err
				}
				items = items[hf.index:]
			}
			it := items[0]
			var te transientError
			if !errors.As(hf.err, &te) {
				failures[it.pos]++
			}
			var pe permanentError
			if errors.As(hf.err, &pe) || failures[it.pos] >= cfg.MaxAttempts {
				it.poison = r.parked(it, CauseHandler, hf.err.Error(), failures[it.pos])
				it.err, it.calls = hf.err, nil
				cfg.Logger.Warn("readmodel: handler keeps failing; event is poison",
					"projection", cfg.Name, "position", it.pos.String(), "stream", it.ev.StreamID,
					"event", it.ev.Name, "attempts", failures[it.pos], "error", hf.err)
				continue
			}
			cfg.Logger.Warn("readmodel: handler failed; retrying the batch", "projection", cfg.Name,
				"position", it.pos.String(), "stream", it.ev.StreamID, "event", it.ev.Name,
				"attempt", failures[it.pos], "error", hf.err)
			if err := wait(); err != nil {
				return err
			}
		case errors.Is(err, ErrCheckpointConflict):
			return err
		default:
			// A store failure. The commit may have happened anyway (the
			// connection broke during it): the stored checkpoints say.
			if ok, cerr := r.wasCommitted(ctx, batch); cerr == nil && ok {
				r.committed(sub, batch)
				items = items[cut:]
				storeFails, backoff = 0, cfg.RetryBackoff
				continue
			} else if errors.Is(cerr, ErrCheckpointConflict) {
				return cerr
			}
			storeFails++
			if cfg.StoreRetries >= 0 && storeFails > cfg.StoreRetries {
				return fmt.Errorf("readmodel: %s: store failed %d times: %w", cfg.Name, storeFails, err)
			}
			cfg.Logger.Warn("readmodel: store failed; retrying the batch", "projection", cfg.Name,
				"attempt", storeFails, "error", err)
			if err := wait(); err != nil {
				return err
			}
		}
	}
	return nil
}

// commit applies the batch in one store transaction.
func (r *Runner[T]) commit(ctx context.Context, batch []*item[T]) error {
	tx, err := r.cfg.Store.Begin(ctx, r.cfg.Name)
	if err != nil {
		return err
	}
	for i, it := range batch {
		if it.poison != nil {
			if err := tx.Park(ctx, *it.poison); err != nil {
				tx.Rollback(ctx)
				return err
			}
			continue
		}
		if len(it.calls) == 0 {
			continue
		}
		h := tx.Handle(it.pos)
		for _, call := range it.calls {
			if err := safeCall(ctx, h, call); err != nil {
				tx.Rollback(ctx)
				return &handlerFailure{index: i, err: err}
			}
		}
	}
	if err := tx.Commit(ctx, r.advances(batch)); err != nil {
		tx.Rollback(ctx)
		return err
	}
	return nil
}

func safeCall[T any](ctx context.Context, tx T, call func(ctx context.Context, tx T) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return call(ctx, tx)
}

// advances returns the checkpoint moves of a batch.
func (r *Runner[T]) advances(batch []*item[T]) []Advance {
	next := make(map[uint16]uint64)
	for _, it := range batch {
		if it.pos.Sequence >= next[it.pos.Partition] {
			next[it.pos.Partition] = it.pos.Sequence
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	adv := make([]Advance, 0, len(next))
	for p, n := range next {
		prev := int64(-1)
		if s, ok := r.applied[p]; ok {
			prev = int64(s)
		}
		adv = append(adv, Advance{Partition: p, Prev: prev, Next: n})
	}
	slices.SortFunc(adv, func(a, b Advance) int { return int(a.Partition) - int(b.Partition) })
	return adv
}

// wasCommitted tells, after a failed commit, whether the store holds the
// batch's checkpoints anyway.
func (r *Runner[T]) wasCommitted(ctx context.Context, batch []*item[T]) (bool, error) {
	cps, err := r.cfg.Store.Checkpoints(ctx, r.cfg.Name)
	if err != nil {
		return false, err
	}
	done, notDone := 0, 0
	for _, a := range r.advances(batch) {
		s, ok := cps[a.Partition]
		switch {
		case ok && s == a.Next:
			done++
		case (!ok && a.Prev < 0) || (ok && int64(s) == a.Prev):
			notDone++
		default:
			return false, &ConflictError{Projection: r.cfg.Name, Partition: a.Partition, Expected: a.Prev,
				Detail: fmt.Sprintf("found %d after a failed commit", s)}
		}
	}
	if done > 0 && notDone > 0 {
		return false, &ConflictError{Projection: r.cfg.Name, Detail: "half of a batch found committed"}
	}
	return done > 0, nil
}

// committed records a committed batch and acknowledges its events.
func (r *Runner[T]) committed(sub *sierradb.Subscription, batch []*item[T]) {
	r.mu.Lock()
	for _, it := range batch {
		if s, ok := r.applied[it.pos.Partition]; !ok || it.pos.Sequence > s {
			r.applied[it.pos.Partition] = it.pos.Sequence
		}
		if h := r.heads[it.pos.Partition]; int64(it.pos.Sequence) > h {
			r.heads[it.pos.Partition] = int64(it.pos.Sequence)
		}
		if it.poison != nil {
			r.nParked++
			r.cfg.Logger.Warn("readmodel: event parked", "projection", r.cfg.Name, "position", it.pos.String(),
				"stream", it.ev.StreamID, "event", it.ev.Name, "cause", string(it.poison.Cause), "reason", it.poison.Reason)
		}
	}
	r.nApplied += uint64(len(batch))
	r.updateLiveLocked()
	close(r.progress)
	r.progress = make(chan struct{})
	r.mu.Unlock()
	for _, it := range batch {
		sub.Ack(it.ev)
	}
}

// caughtUpLocked reports whether every partition has reached heads.
func (r *Runner[T]) caughtUpLocked(heads map[uint16]int64) bool {
	for p, h := range heads {
		if h < 0 {
			continue
		}
		if s, ok := r.applied[p]; !ok || int64(s) < h {
			return false
		}
	}
	return true
}

func (r *Runner[T]) updateLiveLocked() {
	if r.state != CatchingUp || !r.caughtUpLocked(r.targets) {
		return
	}
	r.state = Live
	close(r.live)
	r.cfg.Logger.Info("readmodel: projection is live", "projection", r.cfg.Name)
}

// refreshHeads reads the partitions' latest sequences every LagInterval.
func (r *Runner[T]) refreshHeads(ctx context.Context) {
	t := time.NewTicker(r.cfg.LagInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		heads, err := r.cfg.Client.PartitionSequences(ctx, r.partitions)
		if err != nil {
			if ctx.Err() == nil {
				r.cfg.Logger.Warn("readmodel: reading partition heads failed", "projection", r.cfg.Name, "error", err)
			}
			continue
		}
		r.mu.Lock()
		for p, h := range heads {
			if h > r.heads[p] {
				r.heads[p] = h
			}
		}
		r.headsAt = r.cfg.Now()
		r.mu.Unlock()
	}
}

// Sync waits until the projection has applied everything SierraDB held
// when Sync was called (read with EPSEQ), or until ctx is done or the
// runner stops. SierraDB makes an append visible to EPSEQ asynchronously
// (within milliseconds); to wait for events just appended, pass their
// positions to [Runner.WaitFor].
func (r *Runner[T]) Sync(ctx context.Context) error {
	select {
	case <-r.ready:
	case <-r.done:
		return r.stoppedErr()
	case <-ctx.Done():
		return ctx.Err()
	}
	heads, err := r.cfg.Client.PartitionSequences(ctx, r.partitions)
	if err != nil {
		return err
	}
	return r.wait(ctx, heads)
}

// WaitFor waits until the projection has applied (or skipped, or parked)
// the events at the given positions, such as those of an append's result,
// or until ctx is done or the runner stops.
func (r *Runner[T]) WaitFor(ctx context.Context, positions ...Position) error {
	heads := make(map[uint16]int64)
	for _, p := range positions {
		heads[p.Partition] = max(heads[p.Partition], int64(p.Sequence))
	}
	select {
	case <-r.ready:
	case <-r.done:
		return r.stoppedErr()
	case <-ctx.Done():
		return ctx.Err()
	}
	return r.wait(ctx, heads)
}

// wait waits until every partition has reached heads.
func (r *Runner[T]) wait(ctx context.Context, heads map[uint16]int64) error {
	for {
		r.mu.Lock()
		ok := r.caughtUpLocked(heads)
		ch := r.progress
		r.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-r.done:
			r.mu.Lock()
			ok := r.caughtUpLocked(heads)
			r.mu.Unlock()
			if ok {
				return nil
			}
			return r.stoppedErr()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (r *Runner[T]) stoppedErr() error {
	if err := r.Err(); err != nil {
		return err
	}
	return ErrClosed
}
