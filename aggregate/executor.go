package aggregate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/internal/backoff"
	"github.com/esmill/esmill/internal/telemetry"
	"github.com/esmill/esmill/sierradb"
)

// Command-id defaults (Config.CommandIDRetention, CommandIDMinimum).
const (
	defaultCommandIDRetention = 15 * time.Minute
	defaultCommandIDMinimum   = 16
)

// transientBackoff spaces the executor's retries after a transient store
// failure (a conflict is retried at once: the entity reloads first).
func transientBackoff() *backoff.Backoff {
	return backoff.Policy{Initial: 20 * time.Millisecond, Max: time.Second, Jitter: 0.2}.Start()
}

// Store is what the executor needs of SierraDB; *sierradb.Client has it.
type Store interface {
	AppendMulti(ctx context.Context, partitionKey uuid.UUID, events []sierradb.NewEvent) (sierradb.MultiAppendResult, error)
	Scan(ctx context.Context, streamID string, from, to uint64, opts ...sierradb.ScanOption) (sierradb.ScanPage, error)
}

// Config configures an [Executor]. The zero value is usable.
type Config struct {
	// CacheSize bounds the number of entities kept in memory.
	// Default: 10000.
	CacheSize int
	// IdleTimeout drops an entity unused for this long. Default: 10m;
	// -1 keeps entities until the cache bound pushes them out.
	IdleTimeout time.Duration
	// MaxConflictRetries is how many times a command runs again after a
	// concurrent write. Default: 5; -1 disables retries.
	MaxConflictRetries int
	// ScanPageSize is the page size when loading a stream. Default: 1000.
	ScanPageSize int
	// CommandIDRetention is how long each entity remembers a command's
	// id after the command's time (its events' timestamp), to recognise
	// the command when it is delivered or sent again: a message the
	// transport redelivers, a caller's retry with the same id. It bounds
	// the memory by time, not by a count: ids take 8 bytes each. Choose
	// it above the longest redelivery your transport and callers can
	// produce (see the package documentation, "Command ids"). Default:
	// 15m.
	CommandIDRetention time.Duration
	// CommandIDMinimum is how many of its newest command ids an entity
	// keeps whatever their age (for commands sent with an old logical
	// time, At). Default: 16.
	CommandIDMinimum int
	// VisibilityTimeout bounds the wait for a write that SierraDB has
	// acknowledged (a conflict names its version) to become readable.
	// Default: 5s.
	VisibilityTimeout time.Duration
	// LockTimeout bounds the wait for an entity held by a transaction,
	// for transactions and for plain commands. Default: 5s.
	LockTimeout time.Duration
	// Snapshots stores snapshots of types defined WithSnapshots.
	// Default: SierraDB itself (NewSierraSnapshots) when the store is a
	// *sierradb.Client, otherwise none.
	Snapshots SnapshotStore
	// Logger receives warnings (a snapshot not used or not saved) and,
	// at debug level, conflicts. Default: discard.
	Logger *slog.Logger
	// TracerProvider makes the spans of each command: execute, with
	// load, decide and append (one per attempt) as children; the
	// execute span's context is stored in the command's events (see
	// esmill.MetaTraceParent). Default: the global provider
	// (otel.GetTracerProvider), which records nothing until an
	// application installs an SDK.
	TracerProvider trace.TracerProvider
	// MeterProvider records the executor's metrics (commands by
	// outcome and their duration, conflicts, cache hits, misses and
	// evictions, snapshot loads and saves; see the package
	// documentation). Default: the global provider.
	MeterProvider metric.MeterProvider
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.CacheSize == 0 {
		c.CacheSize = 10000
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 10 * time.Minute
	}
	if c.MaxConflictRetries == 0 {
		c.MaxConflictRetries = 5
	} else if c.MaxConflictRetries < 0 {
		c.MaxConflictRetries = 0
	}
	if c.ScanPageSize == 0 {
		c.ScanPageSize = 1000
	}
	if c.CommandIDRetention == 0 {
		c.CommandIDRetention = defaultCommandIDRetention
	}
	if c.CommandIDMinimum == 0 {
		c.CommandIDMinimum = defaultCommandIDMinimum
	}
	if c.VisibilityTimeout == 0 {
		c.VisibilityTimeout = 5 * time.Second
	}
	if c.LockTimeout == 0 {
		c.LockTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.CacheSize < 0 {
		errs = append(errs, errors.New("aggregate: CacheSize must not be negative"))
	}
	if c.IdleTimeout < -1 {
		errs = append(errs, errors.New("aggregate: IdleTimeout must be positive, 0 (default) or -1"))
	}
	if c.MaxConflictRetries < -1 {
		errs = append(errs, errors.New("aggregate: MaxConflictRetries must be at least -1"))
	}
	if c.ScanPageSize < 0 {
		errs = append(errs, errors.New("aggregate: ScanPageSize must not be negative"))
	}
	if c.CommandIDRetention < 0 {
		errs = append(errs, errors.New("aggregate: CommandIDRetention must not be negative"))
	} else if c.CommandIDRetention > 0 && c.CommandIDRetention < time.Millisecond {
		errs = append(errs, errors.New("aggregate: CommandIDRetention must be at least 1ms"))
	}
	if c.CommandIDMinimum < 0 {
		errs = append(errs, errors.New("aggregate: CommandIDMinimum must not be negative"))
	}
	if c.LockTimeout < 0 {
		errs = append(errs, errors.New("aggregate: LockTimeout must not be negative"))
	}
	if c.VisibilityTimeout < 0 {
		errs = append(errs, errors.New("aggregate: VisibilityTimeout must not be negative"))
	}
	return errors.Join(errs...)
}

// Executor runs commands against entities: one at a time per entity, in
// arrival order, and many entities in parallel, each on the caller's
// goroutine. It is safe for concurrent use. Create one per process and
// store; Close it when done (it does not close the store).
type Executor struct {
	cfg       Config
	store     Store
	snapshots SnapshotStore
	cache     *cache
	ids       idPolicy
	tel       *instruments

	// inflight counts store calls that go on after their caller gave up
	// (see appendMulti); Close waits for them.
	inflight sync.WaitGroup
	// groups joins the appends of types defined WithGroupCommit.
	groups groups

	closeOnce sync.Once
	closing   chan struct{}
	done      chan struct{}
	txSeq     atomic.Uint64
}

// NewExecutor returns an executor over a store (normally a
// *sierradb.Client).
func NewExecutor(store Store, cfg Config) (*Executor, error) {
	if store == nil {
		return nil, errors.New("aggregate: NewExecutor needs a store")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	x := &Executor{
		cfg:       cfg,
		store:     store,
		snapshots: cfg.Snapshots,
		cache:     newCache(cfg.CacheSize, cfg.IdleTimeout, cfg.Now),
		ids:       newIDPolicy(cfg.CommandIDRetention, cfg.CommandIDMinimum),
		closing:   make(chan struct{}),
		done:      make(chan struct{}),
	}
	if x.snapshots == nil {
		if sc, ok := store.(snapshotClient); ok {
			x.snapshots = NewSierraSnapshots(sc)
		}
	}
	tel, err := newInstruments(cfg, x.cache)
	if err != nil {
		return nil, fmt.Errorf("aggregate: metrics: %w", err)
	}
	x.tel = tel
	go x.janitor()
	return x, nil
}

// janitor drops idle entities until Close.
func (x *Executor) janitor() {
	defer close(x.done)
	if x.cfg.IdleTimeout < 0 {
		<-x.closing
		return
	}
	t := time.NewTicker(max(x.cfg.IdleTimeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-x.closing:
			return
		case <-t.C:
			x.cache.sweep()
		}
	}
}

// Close stops the executor's background work. Commands in flight finish;
// new ones fail with [ErrClosed]. It waits for store calls whose callers
// gave up on them (a cancelled context) to end. It is idempotent.
func (x *Executor) Close() error {
	x.closeOnce.Do(func() {
		close(x.closing)
		x.tel.close()
	})
	<-x.done
	x.inflight.Wait()
	return nil
}

func (x *Executor) closed() bool {
	select {
	case <-x.closing:
		return true
	default:
		return false
	}
}

// CachedEntities returns how many entities are in memory.
func (x *Executor) CachedEntities() int { return x.cache.len() }

// Result is what a command did.
type Result struct {
	StreamID     string
	PartitionKey uuid.UUID
	// Events are the appended events, in order; none when the command
	// produced none or was idempotent.
	Events []Appended
	// Version is the entity's version after the command: the version of
	// its last event, or, when it wrote nothing (idempotent, rejected),
	// the entity's current version; -1 when the entity has no event or
	// the command failed before the entity was loaded. (cqrs.Reply carries
	// it across processes under the same rule.)
	Version int64
	// Idempotent: the command had already been handled (by causation,
	// command id or the state check) and nothing was written.
	Idempotent bool
	// DryRun: the events were computed, not written; ids and positions
	// are made up.
	DryRun bool
}

// Appended is one appended event.
type Appended struct {
	Event             Event
	ID                uuid.UUID
	Version           uint64
	PartitionID       uint16
	PartitionSequence uint64
	Timestamp         time.Time
}

// execute runs one command. See Entities.Execute.
func (x *Executor) execute(ctx context.Context, k kind, streamID string, key uuid.UUID, cmd Command, opts []ExecOption) (Result, error) {
	if x.closed() {
		return Result{StreamID: streamID, PartitionKey: key, Version: -1}, ErrClosed
	}
	began := time.Now()
	name := "<nil>"
	if cmd != nil {
		name = cmd.CommandName()
	}
	// A command router's consumer span is the command's span; otherwise
	// the command gets one of its own. Its attributes are all set when it
	// ends, in one call: a sampler sees its name, which names the command.
	var span trace.Span
	routed, ok := telemetry.CommandSpan(ctx)
	if ok {
		span = routed.Span
	} else {
		ctx, span = x.tel.tracer.Start(ctx, x.tel.spanName(name))
	}
	conflicts := 0
	res, err := x.run(ctx, k, streamID, key, cmd, opts, &conflicts)
	x.tel.record(ctx, span, routed, k.Category(), name, streamID, res, err, conflicts, time.Since(began))
	return res, err
}

// run is execute after the bookkeeping: it counts the conflicts met.
func (x *Executor) run(ctx context.Context, k kind, streamID string, key uuid.UUID, cmd Command, opts []ExecOption, conflicts *int) (Result, error) {
	failed := Result{StreamID: streamID, PartitionKey: key, Version: -1}
	p, err := prepare(ctx, x.cfg.Now(), k, streamID, key, cmd, opts, uuid.NewString)
	if err != nil {
		return failed, err
	}
	key, info, meta, metaBytes, o := p.key, p.info, p.meta, p.metaBytes, p.opts
	failed.PartitionKey = key

	e := x.cache.acquire(streamID)
	defer x.cache.release(e)
	if err := x.lockForCommand(ctx, e); err != nil {
		return failed, err
	}
	defer e.lock.Release(1)

	started := x.cfg.Now()
	wait := transientBackoff()
	for attempt := 1; ; attempt++ {
		if e.loaded && e.key != key {
			failed.Version = e.version
			return failed, fmt.Errorf("%w: %s was started with partition key %s, the command names %s: "+
				"send its commands with the key it was started with, or with none to use the entity's own",
				ErrPartitionKeyMismatch, streamID, e.key, key)
		}
		if !e.loaded || e.stale {
			if attempt == 1 {
				x.tel.misses.Add(ctx, 1, x.tel.byCategory.Get(k.Category()).Add...)
			}
			held := o.fence.holds()
			lctx, ls := x.tel.child(ctx, "load", telemetry.Snapshot.Bool(!e.loaded && k.snapshotPolicy() != nil))
			from := e.version
			err := x.load(lctx, k, e, key)
			if ls.IsRecording() {
				ls.SetAttributes(telemetry.Events.Int64(e.version-from), telemetry.Version.Int64(e.version))
			}
			endChild(ls, err)
			if err != nil {
				return failed, err
			}
			e.markFence(o.fence, held)
		} else if attempt == 1 {
			x.tel.hits.Add(ctx, 1, x.tel.byCategory.Get(k.Category()).Add...)
		}
		res, retry, err := x.attempt(ctx, k, e, info, meta, metaBytes, o, started, attempt > 1)
		if !retry {
			return res, err
		}
		if errors.Is(err, sierradb.ErrWrongExpectedVersion) {
			*conflicts++
			x.tel.conflicts.Add(ctx, 1, x.tel.byCategory.Get(k.Category()).Add...)
			x.cfg.Logger.Debug("aggregate: concurrent write; running the command again", "stream", streamID, "attempt", attempt, "error", err)
		}
		if attempt > x.cfg.MaxConflictRetries {
			return failed, &ConflictError{StreamID: streamID, Attempts: attempt, Last: err}
		}
		if !errors.Is(err, sierradb.ErrWrongExpectedVersion) {
			// A transient failure: back off a little before the retry.
			if err := wait.Wait(ctx); err != nil {
				return failed, err
			}
		}
	}
}

// lockForCommand locks an entity for a plain command. The wait for an
// entity that a transaction holds is bounded by LockTimeout, so that a
// command issued from inside a transaction's closure for an entity that
// transaction locked fails instead of waiting forever (tested:
// TestTransactionReleasesEntities).
func (x *Executor) lockForCommand(ctx context.Context, e *entity) error {
	e.arrivals.Add(1)
	if e.lock.TryAcquire(1) {
		return nil
	}
	if e.holder.Load() == nil {
		return e.lock.Acquire(ctx, 1)
	}
	lctx, cancel := context.WithTimeout(ctx, x.cfg.LockTimeout)
	defer cancel()
	if err := e.lock.Acquire(lctx, 1); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &LockTimeoutError{StreamID: e.streamID, Timeout: x.cfg.LockTimeout}
	}
	return nil
}

// attempt runs the command once against the loaded entity. retry says the
// append met a concurrent write (or failed transiently) and the entity was
// reset to be reloaded. again says an earlier attempt of the command
// conflicted or failed transiently.
//
// An answer that writes nothing (a rejection, an idempotent answer, a rate
// limit, a wrong expected version, no events, a dry run) is given from the
// cached state only when that state is known to be current: it rests on
// facts that only grow (a command id or causation already recorded), or
// the command's fence has been held without a break since the state was
// last read or written. Otherwise the executor reads the stream beyond the
// cached version first and, when it moved, decides again on the new state.
func (x *Executor) attempt(ctx context.Context, k kind, e *entity, info *commandInfo, meta codec.Metadata, metaBytes []byte, o execOptions, started time.Time, again bool) (Result, bool, error) {
	var v verdict
	// The decision gets a span of its own when it reads the stream or
	// the command runs again (see lateSpan).
	ds := x.tel.late(ctx, "decide")
	if again {
		ds.open()
	}
	for round := 0; ; round++ {
		cctx := &CommandContext{StreamID: e.streamID, Version: e.version, Time: o.at, Metadata: meta, tracking: e.tracking, started: started, clock: x.cfg.Now}
		v = decide(info, e.state, e.tracking, cctx, o)
		if (v.writes() && !o.dryRun) || v.settled || e.trusted(o.fence) {
			break
		}
		held := o.fence.holds()
		ds.open()
		n, err := x.catchUp(ctx, k, e)
		if err != nil {
			ds.end(err)
			e.reset()
			return Result{StreamID: e.streamID, PartitionKey: e.key, Version: -1}, false, err
		}
		e.markFence(o.fence, held)
		if n == 0 || round >= x.cfg.MaxConflictRetries {
			break
		}
	}
	if ds.opened() {
		ds.span.SetAttributes(telemetry.Events.Int(len(v.events)), attribute.Bool("esmill.idempotent", v.idempotent),
			attribute.Bool("esmill.rejected", v.err != nil))
	}
	// A rejection is the command's outcome, not the decision's failure.
	ds.end(nil)
	res := Result{StreamID: e.streamID, PartitionKey: e.key, Version: e.version}
	evs := v.events
	if !v.writes() {
		res.Idempotent = v.idempotent
		return res, false, v.err
	}
	return x.write(ctx, k, e, evs, meta, metaBytes, o, res, again)
}
