package aggregate

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/sierradb"
)

// Fence is a caller's exclusive right to write an entity for a while,
// such as the lease a command router holds on the entity's partition
// (package cqrs fills it in from its lease member). Under a fence, the
// executor trusts its cached state for answers that write nothing (a
// rejection, an idempotent answer, a rate limit, a wrong expected
// version) as long as the same fence has been held, unbroken, since the
// state was last read from the stream or written; and it checks Valid
// right before every append, so that a holder that lost its right writes
// nothing more.
//
// Without a fence, or under another one, the executor reads the stream
// from its cached version first and runs the command again on what it
// finds: see [Config] and the package documentation ("Fresh answers").
type Fence struct {
	// Scope and Token identify one unbroken hold: the same values mean
	// the same hold. A lease's group and partition make the scope, its
	// fencing token the token.
	Scope string
	Token uint64
	// Valid reports whether the hold still stands. Required.
	Valid func() bool
}

// UnderFence runs the command under a fence (see [Fence]).
func UnderFence(f Fence) ExecOption {
	return func(o *execOptions) {
		if f.Valid != nil {
			o.fence = &f
		}
	}
}

// fenceKey identifies the hold under which an entity's cache was last
// known to be current.
type fenceKey struct {
	scope string
	token uint64
}

func (f *Fence) key() fenceKey { return fenceKey{scope: f.Scope, token: f.Token} }

// holds reports whether f is given and still holds.
func (f *Fence) holds() bool { return f != nil && f.Valid() }

// markFence records that the entity's state is current as of now under f,
// if f held (checked by the caller before it read or wrote); otherwise
// that no fence vouches for it.
func (e *entity) markFence(f *Fence, held bool) {
	if f != nil && held {
		e.fence, e.fenced = f.key(), true
		return
	}
	e.fenced = false
}

// trusted reports whether the entity's cached state is current under f:
// f has held, unbroken, since the state was last read or written.
func (e *entity) trusted(f *Fence) bool {
	return f != nil && e.fenced && e.fence == f.key() && f.Valid()
}

// ErrFenceLost is matched by a [*FenceLostError].
var ErrFenceLost = errors.New("aggregate: fence lost")

// FenceLostError reports a command that was not written because its
// fence no longer held when it was about to be: another holder owns the
// entity now. Nothing was written; the command should be run by the new
// holder (the command router returns it to the transport, which delivers
// it there).
type FenceLostError struct {
	StreamID string
	Scope    string
	Token    uint64
}

func (e *FenceLostError) Error() string {
	return fmt.Sprintf("aggregate: %s: the fence %s/%d no longer holds; nothing was written: the new holder runs the command", e.StreamID, e.Scope, e.Token)
}

func (e *FenceLostError) Is(target error) bool { return target == ErrFenceLost }

// ErrorClass is [esmill.Transient]: the command is to run again, where the
// fence is now held.
func (e *FenceLostError) ErrorClass() esmill.Class { return esmill.Transient }

// ErrOutcomeUnknown is matched by an [*OutcomeUnknownError].
var ErrOutcomeUnknown = errors.New("aggregate: outcome unknown")

// OutcomeUnknownError reports a command whose append was sent to SierraDB
// when the caller's context ended, before the answer came: the events may
// or may not be stored. Running the command again with the same command id
// (WithCommandID) finds out without writing twice: it is idempotent if the
// first append was stored. errors.Is also matches the context's error
// (context.Canceled or context.DeadlineExceeded).
type OutcomeUnknownError struct {
	StreamID  string
	CommandID string
	Err       error
}

func (e *OutcomeUnknownError) Error() string {
	return fmt.Sprintf("aggregate: %s: the call ended (%v) while SierraDB was storing command %s: the outcome is unknown; "+
		"run the command again with the same command id (aggregate.WithCommandID) to find out", e.StreamID, e.Err, e.CommandID)
}

func (e *OutcomeUnknownError) Unwrap() []error { return []error{ErrOutcomeUnknown, e.Err} }

// ErrorClass is [esmill.Transient]: running it again with its id is safe.
func (e *OutcomeUnknownError) ErrorClass() esmill.Class { return esmill.Transient }

// The store calls below return as soon as ctx ends, even when the store
// itself honours only deadlines (go-redis waits for its read timeout on a
// cancelled context): the call goes on in a goroutine that the executor
// owns and Close waits for. A caller that gave up on an append gets an
// *OutcomeUnknownError, and the entity is reloaded before its next
// command.

type appendReply struct {
	res sierradb.MultiAppendResult
	err error
}

// errAbandoned: the caller's context ended while the store call was in
// flight.
var errAbandoned = errors.New("aggregate: call abandoned")

func (x *Executor) appendMulti(ctx context.Context, key uuid.UUID, events []sierradb.NewEvent) (sierradb.MultiAppendResult, error) {
	if ctx.Done() == nil {
		return x.store.AppendMulti(ctx, key, events)
	}
	ch := make(chan appendReply, 1)
	x.inflight.Add(1)
	go func() {
		defer x.inflight.Done()
		res, err := x.store.AppendMulti(ctx, key, events)
		ch <- appendReply{res, err}
	}()
	select {
	case r := <-ch:
		return r.res, r.err
	case <-ctx.Done():
		select {
		case r := <-ch: // it answered just as ctx ended
			return r.res, r.err
		default:
		}
		return sierradb.MultiAppendResult{}, fmt.Errorf("%w: %w", errAbandoned, ctx.Err())
	}
}

type scanReply struct {
	page sierradb.ScanPage
	err  error
}

func (x *Executor) scan(ctx context.Context, streamID string, from, to uint64, opts ...sierradb.ScanOption) (sierradb.ScanPage, error) {
	if ctx.Done() == nil {
		return x.store.Scan(ctx, streamID, from, to, opts...)
	}
	ch := make(chan scanReply, 1)
	x.inflight.Add(1)
	go func() {
		defer x.inflight.Done()
		page, err := x.store.Scan(ctx, streamID, from, to, opts...)
		ch <- scanReply{page, err}
	}()
	select {
	case r := <-ch:
		return r.page, r.err
	case <-ctx.Done():
		return sierradb.ScanPage{}, ctx.Err()
	}
}
