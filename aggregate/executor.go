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

	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/sierradb"
)

// Store is what the executor needs of SierraDB; *sierradb.Client has it.
type Store interface {
	AppendMulti(ctx context.Context, partitionKey uuid.UUID, events []sierradb.NewEvent) (sierradb.MultiAppendResult, error)
	Scan(ctx context.Context, streamID string, from, to uint64, opts ...sierradb.Option) (sierradb.ScanPage, error)
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
	// CommandIDWindow is how many recent command ids each entity
	// remembers to recognise a redelivered command. Default: 256.
	CommandIDWindow int
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
	// Logger receives warnings. Default: discard.
	Logger *slog.Logger
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
	if c.CommandIDWindow == 0 {
		c.CommandIDWindow = 256
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
	if c.CommandIDWindow < 0 {
		errs = append(errs, errors.New("aggregate: CommandIDWindow must not be negative"))
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
		closing:   make(chan struct{}),
		done:      make(chan struct{}),
	}
	if x.snapshots == nil {
		if sc, ok := store.(snapshotClient); ok {
			x.snapshots = NewSierraSnapshots(sc)
		}
	}
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
// new ones fail with [ErrClosed]. It is idempotent.
func (x *Executor) Close() error {
	x.closeOnce.Do(func() { close(x.closing) })
	<-x.done
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

// ExecOption adjusts one command.
type ExecOption func(*execOptions)

type execOptions struct {
	expected      sierradb.ExpectedVersion
	causation     *codec.Causation
	data          any
	hasData       bool
	at            time.Time
	partitionKey  *uuid.UUID
	correlationID string
	commandID     string
	dryRun        bool
}

// ExpectVersion runs the command only if the entity is at this version;
// otherwise it fails with an [*ExpectedVersionError].
func ExpectVersion(v sierradb.ExpectedVersion) ExecOption {
	return func(o *execOptions) { o.expected = v }
}

// CausedBy names the event that caused the command. The entity then runs
// the command only once per causing event and command name, and skips
// causing events older than one it has handled from the same stream.
func CausedBy(c codec.Causation) ExecOption {
	return func(o *execOptions) { o.causation = &c }
}

// CausedByEvent is [CausedBy] with a stored event.
func CausedByEvent(ev sierradb.Event) ExecOption {
	return CausedBy(codec.Causation{EventID: ev.ID, StreamID: ev.StreamID, StreamVersion: ev.StreamVersion})
}

// WithMetadata attaches the caller's metadata (kameo_es's data), encoded as
// CBOR and stored with every event of the command.
func WithMetadata(v any) ExecOption {
	return func(o *execOptions) { o.data, o.hasData = v, true }
}

// At sets the command's logical time, which becomes the events' timestamp
// (milliseconds). Default: now.
func At(t time.Time) ExecOption {
	return func(o *execOptions) { o.at = t }
}

// OnPartitionKey overrides the entity's partition key for this command. It
// must be the key the entity's stream was started with.
func OnPartitionKey(key uuid.UUID) ExecOption {
	return func(o *execOptions) { o.partitionKey = &key }
}

// WithCorrelationID ties the events to a conversation across services.
func WithCorrelationID(id string) ExecOption {
	return func(o *execOptions) { o.correlationID = id }
}

// WithCommandID identifies this command (typically the id of the message
// that carried it). A command whose id the entity has recently seen is not
// run again: the result is idempotent. Default: a new random id, which
// still protects the executor's own retries.
func WithCommandID(id string) ExecOption {
	return func(o *execOptions) { o.commandID = id }
}

// DryRun computes the events without writing or applying them.
func DryRun() ExecOption {
	return func(o *execOptions) { o.dryRun = true }
}

// Result is what a command did.
type Result struct {
	StreamID     string
	PartitionKey uuid.UUID
	// Events are the appended events, in order; none when the command
	// produced none or was idempotent.
	Events []Appended
	// Version is the entity's version after the command (-1: no event).
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
		return Result{}, ErrClosed
	}
	if err := sierradb.ValidateStreamID(streamID); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalidID, err)
	}
	o := execOptions{at: x.cfg.Now()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.partitionKey != nil {
		key = *o.partitionKey
	}
	info, err := k.command(cmd)
	if err != nil {
		return Result{}, err
	}
	if o.commandID == "" {
		o.commandID = uuid.NewString()
	}
	meta := codec.Metadata{Command: info.name, Causation: o.causation, CorrelationID: o.correlationID, CommandID: o.commandID}
	if o.hasData {
		if meta.Data, err = codec.EncodeData(o.data); err != nil {
			return Result{}, err
		}
	}
	metaBytes, err := codec.EncodeMetadata(meta)
	if err != nil {
		return Result{}, err
	}

	e := x.cache.acquire(streamID)
	defer x.cache.release(e)
	if err := x.lockForCommand(ctx, e); err != nil {
		return Result{}, err
	}
	defer e.lock.Unlock()

	started := x.cfg.Now()
	for attempt := 1; ; attempt++ {
		if e.loaded && e.key != key {
			return Result{}, fmt.Errorf("%w: %s uses %s, the command names %s", ErrPartitionKeyMismatch, streamID, e.key, key)
		}
		if !e.loaded || e.stale {
			if err := x.load(ctx, k, e, key); err != nil {
				return Result{}, err
			}
		}
		res, retry, err := x.attempt(ctx, k, e, info, meta, metaBytes, o, started)
		if !retry {
			return res, err
		}
		if attempt > x.cfg.MaxConflictRetries {
			return Result{}, &ConflictError{StreamID: streamID, Attempts: attempt, Last: err}
		}
		if !errors.Is(err, sierradb.ErrWrongExpectedVersion) {
			// A transient failure: back off a little before the retry.
			select {
			case <-ctx.Done():
				return Result{}, ctx.Err()
			case <-time.After(time.Duration(attempt) * 20 * time.Millisecond):
			}
		}
	}
}

// lockForCommand locks an entity for a plain command. The wait for an
// entity that a transaction holds is bounded by LockTimeout, so that a
// command issued from inside a transaction's closure for an entity that
// transaction locked fails instead of waiting forever.
func (x *Executor) lockForCommand(ctx context.Context, e *entity) error {
	if e.lock.TryLock() {
		return nil
	}
	if e.holder.Load() == nil {
		return e.lock.Lock(ctx)
	}
	lctx, cancel := context.WithTimeout(ctx, x.cfg.LockTimeout)
	defer cancel()
	if err := e.lock.Lock(lctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &LockTimeoutError{StreamID: e.streamID, Timeout: x.cfg.LockTimeout}
	}
	return nil
}

// attempt runs the command once against the loaded entity. retry says the
// append met a concurrent write (or failed transiently) and the entity was
// reset to be reloaded.
func (x *Executor) attempt(ctx context.Context, k kind, e *entity, info *commandInfo, meta codec.Metadata, metaBytes []byte, o execOptions, started time.Time) (Result, bool, error) {
	res := Result{StreamID: e.streamID, PartitionKey: e.key, Version: e.version}
	cctx := &Context{StreamID: e.streamID, Version: e.version, Time: o.at, Metadata: meta, tracking: e.tracking, started: started, clock: x.cfg.Now}
	evs, idem, err := decide(info, e.state, e.tracking, cctx, o)
	if err != nil || idem || len(evs) == 0 {
		res.Idempotent = idem
		return res, false, err
	}
	news := make([]sierradb.NewEvent, len(evs))
	for i, ev := range evs {
		name, payload, md, err := k.encodeStored(ev, meta, metaBytes)
		if err != nil {
			return res, false, err
		}
		news[i] = sierradb.NewEvent{
			StreamID: e.streamID, Name: name, ID: sierradb.NewEventID(e.key),
			ExpectedVersion: sierradb.ExpectAfter(e.version + int64(i)),
			Timestamp:       o.at, Payload: payload, Metadata: md,
		}
	}
	if o.dryRun {
		res.DryRun = true
		for i, ev := range evs {
			res.Events = append(res.Events, Appended{Event: ev, ID: news[i].ID, Version: uint64(e.version + int64(i) + 1), Timestamp: o.at.Truncate(time.Millisecond)})
		}
		res.Version = e.version + int64(len(evs))
		return res, false, nil
	}
	ar, err := x.store.AppendMulti(ctx, e.key, news)
	if err != nil {
		var wv *sierradb.WrongExpectedVersionError
		switch {
		case errors.As(err, &wv):
			// Another writer got there first: catch up (waiting to see
			// at least the version the server reported) and run again.
			// The state is intact: nothing of this attempt was applied.
			e.stale = true
			if wv.Parsed {
				e.minVersion = wv.Current
			}
			return res, true, err
		case ctx.Err() == nil && sierradb.IsRetryable(err):
			// The outcome is unknown. Catch up and run again with the
			// same command id: if the first try was stored, catching up
			// sees its id and the command is idempotent. (If it is
			// stored but not yet visible, the retry's append conflicts
			// and the next catch-up waits for it.)
			e.stale = true
			return res, true, err
		}
		e.reset()
		return res, false, err
	}
	if err := x.applyAppended(k, e, evs, meta, ar, &res); err != nil {
		return res, false, err
	}
	x.maybeSnapshot(ctx, k, e)
	return res, false, nil
}

// decide runs the checks and the handler, in kameo_es's order with its
// defects fixed: the caller's expected version, then idempotency (command
// id, causation, the state check), then the rate limit, then the handler.
// A duplicate is therefore never rate limited or rejected.
func decide(info *commandInfo, state any, tr *tracking, ctx *Context, o execOptions) ([]Event, bool, error) {
	if !o.expected.IsAny() && !o.expected.Matches(ctx.Version) {
		return nil, false, &ExpectedVersionError{StreamID: ctx.StreamID, Current: ctx.Version, Expected: o.expected}
	}
	m := ctx.Metadata
	if m.CommandID != "" && tr.seenCommand(m.CommandID) {
		return nil, true, nil
	}
	if c := tr.check(m); c == AlreadyProcessed || c == OutOfOrder {
		return nil, true, nil
	}
	if info.idempotent != nil {
		idem, err := callIdempotent(ctx.StreamID, info, state, ctx)
		if err != nil || idem {
			return nil, idem, err
		}
	}
	if l := info.limit; l != nil && tr.countSince(info.name, o.at.Add(-l.Window)) >= l.Max {
		return nil, false, &RateLimitError{StreamID: ctx.StreamID, Command: info.name, Limit: *l}
	}
	evs, err := callHandle(ctx.StreamID, info, state, ctx)
	if err != nil {
		var pe *PanicError
		if errors.As(err, &pe) {
			return nil, false, err
		}
		return nil, false, &RejectedError{StreamID: ctx.StreamID, Command: info.name, Err: err}
	}
	return evs, false, nil
}

func callHandle(streamID string, info *commandInfo, state any, ctx *Context) (evs []Event, err error) {
	defer recoverPanic(streamID, &err)
	return info.handle(state, ctx)
}

func callIdempotent(streamID string, info *commandInfo, state any, ctx *Context) (idem bool, err error) {
	defer recoverPanic(streamID, &err)
	return info.idempotent(state, ctx), nil
}
