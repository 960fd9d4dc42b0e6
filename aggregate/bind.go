package aggregate

import (
	"context"

	"github.com/esmill/esmill/sierradb"
)

// Entities runs commands for one entity type on an executor.
type Entities[S any, ID comparable] struct {
	x *Executor
	t *Type[S, ID]
}

// Bind returns the typed entry point for entity type t on executor x.
func Bind[S any, ID comparable](x *Executor, t *Type[S, ID]) *Entities[S, ID] {
	return &Entities[S, ID]{x: x, t: t}
}

// Type returns the entity type.
func (en *Entities[S, ID]) Type() *Type[S, ID] { return en.t }

// Execute runs a command against the entity with this id and returns what
// it appended. Commands for one entity run one at a time, in order; the
// command sees the entity's state after every earlier command.
//
// Errors: [*RejectedError] (the handler said no; ErrRejected),
// [*ExpectedVersionError], [*RateLimitError], [*ConflictError],
// [*PanicError], [*UnknownCommandError], [*VersionGapError],
// [*EventDecodeError], a context error, or a store error (check
// sierradb.IsRetryable).
func (en *Entities[S, ID]) Execute(ctx context.Context, id ID, cmd Command, opts ...ExecOption) (Result, error) {
	return en.x.execute(ctx, en.t, en.t.StreamID(id), en.t.partitionKey(id), cmd, opts)
}

// Load returns the entity's current state and version (-1 for a new
// entity): it loads the entity, or, when it is cached, reads what the
// stream holds beyond the cached version. The state is a copy.
func (en *Entities[S, ID]) Load(ctx context.Context, id ID) (S, int64, error) {
	var zero S
	streamID := en.t.StreamID(id)
	if err := sierradb.ValidateStreamID(streamID); err != nil {
		return zero, 0, err
	}
	e := en.x.cache.acquire(streamID)
	defer en.x.cache.release(e)
	if err := e.lock.Acquire(ctx, 1); err != nil {
		return zero, 0, err
	}
	defer e.lock.Release(1)
	if !e.loaded || e.stale {
		if err := en.x.load(ctx, en.t, e, en.t.partitionKey(id)); err != nil {
			return zero, 0, err
		}
	} else if _, err := en.x.catchUp(ctx, en.t, e); err != nil {
		e.reset()
		return zero, 0, err
	}
	return *e.state.(*S), e.version, nil
}

// AnyType is an entity type seen without its type parameters, for
// components (like the command router) that route by category and command
// name. Every *Type is one.
type AnyType interface {
	Category() string
	CommandNames() []string
	DecodeCommand(name string, f Format, payload []byte) (Command, error)
	Format() Format
	executeString(ctx context.Context, x *Executor, id string, cmd Command, opts []ExecOption) (Result, error)
}

func (t *Type[S, ID]) executeString(ctx context.Context, x *Executor, id string, cmd Command, opts []ExecOption) (Result, error) {
	parsed, err := t.parseID(id)
	if err != nil {
		return Result{}, &InvalidIDError{Category: t.category, ID: id, Err: err}
	}
	return x.execute(ctx, t, t.StreamID(parsed), t.partitionKey(parsed), cmd, opts)
}

// ExecuteAny runs a command for an entity given by its type and the string
// form of its id.
func (x *Executor) ExecuteAny(ctx context.Context, t AnyType, id string, cmd Command, opts ...ExecOption) (Result, error) {
	return t.executeString(ctx, x, id, cmd, opts)
}
