package aggregate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/internal/backoff"
	"github.com/esmill/esmill/sierradb"
)

// Errors of transactions.
var (
	// ErrLockTimeout: an entity stayed locked by a transaction for longer
	// than the lock timeout.
	ErrLockTimeout = esmill.MarkTransient(errors.New("aggregate: entity lock timed out"))
	// ErrTxContention: a transaction kept yielding to older ones.
	ErrTxContention = esmill.MarkTransient(errors.New("aggregate: transaction gave up after repeated lock contention"))
)

// LockTimeoutError reports an entity that could not be locked in time.
type LockTimeoutError struct {
	StreamID string
	Timeout  time.Duration
}

func (e *LockTimeoutError) Error() string {
	return fmt.Sprintf("aggregate: %s stayed locked for %s", e.StreamID, e.Timeout)
}

func (e *LockTimeoutError) Is(target error) bool { return target == ErrLockTimeout }

// ErrorClass is [esmill.Transient].
func (e *LockTimeoutError) ErrorClass() esmill.Class { return esmill.Transient }

// PartitionKeyError reports an entity whose partition key is not the
// transaction's.
type PartitionKeyError struct {
	StreamID  string
	EntityKey uuid.UUID
	TxKey     uuid.UUID
}

func (e *PartitionKeyError) Error() string {
	return fmt.Sprintf("aggregate: %s has partition key %s, but the transaction is bound to %s: "+
		"entities of one transaction must share its partition key (SierraDB appends atomically only within one partition)",
		e.StreamID, e.EntityKey, e.TxKey)
}

func (e *PartitionKeyError) Is(target error) bool { return target == ErrPartitionKeyMismatch }

// ErrorClass is [esmill.Final].
func (e *PartitionKeyError) ErrorClass() esmill.Class { return esmill.Final }

// txState identifies a transaction across its attempts, for the wait-die
// rule: started never changes between attempts, so a transaction that
// yields grows older than the ones it yielded to and eventually wins
// (tested: TestTransactionsInOppositeOrderBothFinish).
type txState struct {
	id      string
	started time.Time
	seq     uint64
}

// older reports whether a started before b (ties broken by sequence).
func (a *txState) older(b *txState) bool {
	if !a.started.Equal(b.started) {
		return a.started.Before(b.started)
	}
	return a.seq < b.seq
}

// txBackoff spaces a transaction's attempts after a conflict or after
// yielding: short and widely jittered, so that contenders spread out.
func txBackoff() *backoff.Backoff {
	return backoff.Policy{Initial: 5 * time.Millisecond, Max: 200 * time.Millisecond, Jitter: 1}.Start()
}

// errDie is a transaction yielding to an older one.
var errDie = errors.New("aggregate: transaction yields to an older one")

// Tx is a transaction in progress. Commands run through [In]; nothing is
// written until the closure returns.
type Tx struct {
	x        *Executor
	key      uuid.UUID
	state    *txState
	opts     txOptions
	entities map[string]*txEntity
	order    []*txEntity
	pending  []sierradb.NewEvent
	results  []*pendingResult
	commands int
	abort    *abortSignal
	// dead: the transaction yielded to an older one; every later command
	// fails and the closure runs again.
	dead  bool
	ended bool
}

type txEntity struct {
	e *entity
	k kind
}

type pendingResult struct {
	res    *Result
	first  int // index of its first event in pending
	events []Event
	meta   codec.Metadata
	ent    *txEntity
}

type abortSignal struct{ value any }

func (a *abortSignal) Error() string { return "aggregate: transaction aborted" }

// Abort ends the transaction without writing anything; the closure returns
// it: `return tx.Abort(value)`. The value comes back in TxResult.
func (tx *Tx) Abort(value any) error {
	tx.abort = &abortSignal{value: value}
	return tx.abort
}

// PartitionKey returns the partition key the transaction is bound to.
func (tx *Tx) PartitionKey() uuid.UUID { return tx.key }

// TxOption adjusts a transaction.
type TxOption func(*txOptions)

type txOptions struct {
	lockTimeout time.Duration
	maxRetries  int
	dryRun      bool
}

// TxLockTimeout bounds the wait for each entity a transaction locks.
// Default: Config.LockTimeout.
func TxLockTimeout(d time.Duration) TxOption { return func(o *txOptions) { o.lockTimeout = d } }

// TxMaxRetries bounds how often the closure runs again after a conflict or
// after yielding to an older transaction. Default: 10.
func TxMaxRetries(n int) TxOption { return func(o *txOptions) { o.maxRetries = n } }

// TxDryRun runs the closure and computes every event, then writes nothing.
func TxDryRun() TxOption { return func(o *txOptions) { o.dryRun = true } }

// TxResult is what a transaction did.
type TxResult struct {
	// Committed: the events were written (or there were none).
	Committed bool
	// Aborted: the closure returned tx.Abort(value); AbortValue is value.
	Aborted    bool
	AbortValue any
	// DryRun: the events were computed, not written.
	DryRun bool
	// Results of the commands of the last attempt, in order, with their
	// positions filled in once committed.
	Results []Result
	// Attempts is how many times the closure ran.
	Attempts int
}

// Transaction runs fn, whose commands may touch several entities, and
// writes all their events in one atomic append, or none of them.
//
// SierraDB appends atomically only within one partition, so a transaction
// is bound to one partition key, and every entity it touches must have that
// key (define the types WithPartitionKey, or pass OnPartitionKey);
// otherwise the command fails with a [*PartitionKeyError].
//
// Commands see the events of earlier commands in the transaction. Every
// event states its expected version, computed from the entity's state. The
// entities stay locked until the transaction ends; a transaction waits for
// a lock held by a younger one and yields (releases everything and runs
// again) when an older one holds it, so two transactions that lock the same
// entities in opposite order both finish. fn may therefore run more than
// once (also after a write conflict), and must not have other side
// effects. It commits by returning nil, aborts with `return tx.Abort(v)`,
// and fails with any other error (nothing is written, the error is
// returned).
func (x *Executor) Transaction(ctx context.Context, key uuid.UUID, fn func(ctx context.Context, tx *Tx) error, opts ...TxOption) (TxResult, error) {
	o := txOptions{lockTimeout: x.cfg.LockTimeout, maxRetries: 10}
	for _, opt := range opts {
		opt(&o)
	}
	state := &txState{id: uuid.NewString(), started: x.cfg.Now(), seq: x.txSeq.Add(1)}
	wait := txBackoff()
	var res TxResult
	for attempt := 1; ; attempt++ {
		if x.closed() {
			return res, ErrClosed
		}
		res.Attempts = attempt
		tx := &Tx{x: x, key: key, state: state, opts: o, entities: map[string]*txEntity{}}
		err := fn(ctx, tx)
		var retry bool
		switch {
		case tx.abort != nil && errors.Is(err, tx.abort):
			tx.release(false)
			res.Aborted, res.AbortValue, res.Results = true, tx.abort.value, tx.resultsCopy()
			return res, nil
		case tx.dead || errors.Is(err, errDie):
			tx.release(false)
			err, retry = errDie, true
		case err != nil:
			tx.release(false)
			return res, err
		case o.dryRun:
			res.DryRun, res.Results = true, tx.resultsCopy()
			tx.release(false)
			return res, nil
		default:
			err = tx.commit(ctx)
			if err == nil {
				res.Committed, res.Results = true, tx.resultsCopy()
				return res, nil
			}
			var wv *sierradb.WrongExpectedVersionError
			retry = errors.As(err, &wv) || (ctx.Err() == nil && sierradb.IsRetryable(err))
			if !retry {
				return res, err
			}
		}
		if attempt > o.maxRetries {
			if errors.Is(err, errDie) {
				return res, fmt.Errorf("%w (%d attempts)", ErrTxContention, attempt)
			}
			return res, &ConflictError{StreamID: "transaction " + state.id, Attempts: attempt, Last: err}
		}
		if err := wait.Wait(ctx); err != nil {
			return res, err
		}
	}
}

// enter locks and loads an entity for the transaction.
func (tx *Tx) enter(ctx context.Context, k kind, streamID string, key uuid.UUID) (*txEntity, error) {
	if te := tx.entities[streamID]; te != nil {
		return te, nil
	}
	if key != tx.key {
		return nil, &PartitionKeyError{StreamID: streamID, EntityKey: key, TxKey: tx.key}
	}
	e := tx.x.cache.acquire(streamID)
	if err := tx.lock(ctx, e); err != nil {
		tx.x.cache.release(e)
		return nil, err
	}
	te := &txEntity{e: e, k: k}
	tx.entities[streamID] = te
	tx.order = append(tx.order, te)
	if e.loaded && e.key != key {
		return nil, &PartitionKeyError{StreamID: streamID, EntityKey: e.key, TxKey: tx.key}
	}
	if !e.loaded || e.stale {
		if err := tx.x.load(ctx, k, e, key); err != nil {
			return nil, err
		}
		return te, nil
	}
	// A cached entity may be behind the stream (another process wrote
	// to it): read what is new first, so that the transaction's answers
	// (a rejection that aborts it, say) come from current state.
	if _, err := tx.x.catchUp(ctx, k, e); err != nil {
		e.reset()
		return nil, err
	}
	return te, nil
}

// lock applies the wait-die rule: wait for a younger holder (up to the
// lock timeout), yield to an older one.
func (tx *Tx) lock(ctx context.Context, e *entity) error {
	if e.lock.TryAcquire(1) {
		e.holder.Store(tx.state)
		return nil
	}
	if h := e.holder.Load(); h != nil && h.older(tx.state) {
		tx.dead = true
		return errDie
	}
	lctx, cancel := context.WithTimeout(ctx, tx.opts.lockTimeout)
	defer cancel()
	if err := e.lock.Acquire(lctx, 1); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &LockTimeoutError{StreamID: e.streamID, Timeout: tx.opts.lockTimeout}
	}
	e.holder.Store(tx.state)
	return nil
}

// release unlocks every entity. Entities whose state holds events that
// were not written are reset, to be reloaded.
func (tx *Tx) release(committed bool) {
	for _, te := range tx.order {
		if !committed {
			te.e.reset()
		}
		te.e.holder.Store(nil)
		te.e.lock.Release(1)
		tx.x.cache.release(te.e)
	}
	tx.order, tx.entities, tx.ended = nil, nil, true
}

func (tx *Tx) resultsCopy() []Result {
	out := make([]Result, len(tx.results))
	for i, p := range tx.results {
		out[i] = *p.res
	}
	return out
}

// execute runs one command inside the transaction.
func (tx *Tx) execute(ctx context.Context, k kind, streamID string, key uuid.UUID, cmd Command, opts []ExecOption) (Result, error) {
	switch {
	case tx.ended:
		return Result{}, errors.New("aggregate: transaction already ended")
	case tx.dead:
		return Result{}, errDie
	}
	// Command ids are stable across attempts, so that a commit whose
	// outcome was unknown is recognised when the closure runs again.
	tx.commands++
	n := tx.commands
	p, err := prepare(context.Background(), tx.x.cfg.Now(), k, streamID, key, cmd, opts, func() string { return tx.state.id + "/" + strconv.Itoa(n) })
	if err != nil {
		return Result{StreamID: streamID, PartitionKey: key, Version: -1}, err
	}
	key, info, meta, metaBytes, o := p.key, p.info, p.meta, p.metaBytes, p.opts
	te, err := tx.enter(ctx, k, streamID, key)
	if err != nil {
		return Result{StreamID: streamID, PartitionKey: key, Version: -1}, err
	}
	e := te.e
	cctx := &CommandContext{StreamID: streamID, Version: e.version, Time: o.at, Metadata: meta, tracking: e.tracking, started: o.at, clock: tx.x.cfg.Now}
	v := decide(info, e.state, e.tracking, cctx, o)
	res := &Result{StreamID: streamID, PartitionKey: key, Version: e.version, Idempotent: v.idempotent, DryRun: tx.opts.dryRun}
	if !v.writes() {
		return *res, v.err
	}
	evs := v.events
	pr := &pendingResult{res: res, first: len(tx.pending), events: evs, meta: meta, ent: te}
	for i, ev := range evs {
		name, payload, md, err := k.encodeStored(ev, meta, metaBytes)
		if err != nil {
			return Result{}, err
		}
		ne := sierradb.NewEvent{
			StreamID: streamID, Name: name, ID: sierradb.NewEventID(key),
			ExpectedVersion: sierradb.ExpectAfter(e.version + int64(i)),
			Timestamp:       o.at, Payload: payload, Metadata: md,
		}
		tx.pending = append(tx.pending, ne)
		res.Events = append(res.Events, Appended{Event: ev, ID: ne.ID, Version: uint64(e.version + int64(i) + 1), Timestamp: o.at.Truncate(time.Millisecond)})
	}
	// Later commands of the transaction see these events.
	for i, ev := range evs {
		v := uint64(e.version + int64(i) + 1)
		if err := k.applyNew(e.state, ev, EventMeta{StreamID: streamID, Version: v, Metadata: meta, Timestamp: o.at.UnixMilli()}); err != nil {
			return Result{}, err
		}
		e.tracking.record(meta, res.Events[0].ID, o.at.UnixMilli(), tx.x.cfg.Now().UnixMilli())
	}
	e.version += int64(len(evs))
	res.Version = e.version
	tx.results = append(tx.results, pr)
	return *res, nil
}

// commit writes every pending event in one EMAPPEND and releases the
// entities.
func (tx *Tx) commit(ctx context.Context) error {
	if len(tx.pending) == 0 {
		tx.release(true)
		return nil
	}
	ar, err := tx.x.appendMulti(ctx, tx.key, tx.pending)
	if err != nil {
		tx.release(false)
		if errors.Is(err, errAbandoned) {
			return &OutcomeUnknownError{StreamID: "transaction " + tx.state.id, CommandID: tx.state.id, Err: ctx.Err()}
		}
		return err
	}
	for _, p := range tx.results {
		for i := range p.res.Events {
			a := ar.Events[p.first+i]
			ev := &p.res.Events[i]
			ev.ID, ev.Version, ev.PartitionID, ev.PartitionSequence, ev.Timestamp = a.EventID, a.StreamVersion, ar.PartitionID, a.PartitionSequence, a.Timestamp
		}
		p.ent.e.sinceSnapshot += len(p.events)
	}
	for _, te := range tx.order {
		tx.x.maybeSnapshot(ctx, te.k, te.e)
	}
	tx.release(true)
	return nil
}

// TxEntities runs commands for one entity type inside a transaction.
type TxEntities[S any, ID comparable] struct {
	tx *Tx
	t  *Type[S, ID]
}

// In returns the typed entry point for entity type t inside tx.
func In[S any, ID comparable](tx *Tx, t *Type[S, ID]) *TxEntities[S, ID] {
	return &TxEntities[S, ID]{tx: tx, t: t}
}

// Execute runs a command inside the transaction. Its events are written
// when the transaction commits; the Result's positions are filled in then
// (see TxResult.Results).
func (en *TxEntities[S, ID]) Execute(ctx context.Context, id ID, cmd Command, opts ...ExecOption) (Result, error) {
	return en.tx.execute(ctx, en.t, en.t.StreamID(id), en.t.partitionKey(id), cmd, opts)
}

// Load returns an entity's state as the transaction sees it, locking the
// entity for the rest of the transaction.
func (en *TxEntities[S, ID]) Load(ctx context.Context, id ID) (S, int64, error) {
	var zero S
	te, err := en.tx.enter(ctx, en.t, en.t.StreamID(id), en.t.partitionKey(id))
	if err != nil {
		return zero, 0, err
	}
	return *te.e.state.(*S), te.e.version, nil
}
