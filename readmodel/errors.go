package readmodel

import (
	"errors"
	"fmt"

	"github.com/esmill/esmill"
)

var (
	// ErrCheckpointConflict: the stored checkpoint is not the one a commit
	// expected, because another runner of the same projection advanced it
	// (or holds it). Nothing of the failed commit is applied.
	ErrCheckpointConflict = errors.New("readmodel: checkpoint conflict: another runner advanced this projection")
	// ErrPoison is matched by a [*PoisonError].
	ErrPoison = errors.New("readmodel: poison event")
	// ErrNoActive: no projection is active for a read-model name.
	ErrNoActive = errors.New("readmodel: no active projection")
	// ErrInvalidName: a projection name is not valid; see [ValidateName].
	ErrInvalidName = errors.New("readmodel: invalid projection name")
	// ErrClosed: the runner was closed. It matches esmill.ErrClosed.
	ErrClosed error = &esmill.ClosedError{Text: "readmodel: runner closed"}
	// ErrRunning: Run or Start was called on a runner that already runs
	// or ran.
	ErrRunning = errors.New("readmodel: runner already started")
	// ErrSubscriptionEnded: the SierraDB subscription ended. The error is
	// a [*SubscriptionEndedError].
	ErrSubscriptionEnded = errors.New("readmodel: subscription ended")
	// ErrNotParked: no event of the projection is parked at the position
	// (it was not, or it was replayed or skipped already).
	ErrNotParked = errors.New("readmodel: no event is parked at this position")
)

// SubscriptionEndedError ends a runner whose SierraDB subscription ended
// (the subscription itself reconnects after lost connections; it ends for
// good on a server error it cannot retry, or when its client is closed).
// It matches [ErrSubscriptionEnded].
type SubscriptionEndedError struct {
	Projection string
	// Err is why the subscription ended (sierradb.Subscription.Err); nil
	// when it was closed.
	Err error
}

func (e *SubscriptionEndedError) Error() string {
	why := "it was closed (was the sierradb.Client closed before the runner?)"
	if e.Err != nil {
		why = e.Err.Error()
	}
	return fmt.Sprintf("readmodel: projection %q stopped: its SierraDB subscription ended: %s; "+
		"run the projection again once the server is back: it resumes from its checkpoints", e.Projection, why)
}

// Is reports whether target is [ErrSubscriptionEnded].
func (e *SubscriptionEndedError) Is(target error) bool { return target == ErrSubscriptionEnded }

// Unwrap returns why the subscription ended.
func (e *SubscriptionEndedError) Unwrap() error { return e.Err }

// ConflictError details an [ErrCheckpointConflict].
type ConflictError struct {
	Projection string
	Partition  uint16
	// Expected is the checkpoint the commit expected (-1: none).
	Expected int64
	// Detail says what the store found, when it knows.
	Detail string
}

func (e *ConflictError) Error() string {
	s := fmt.Sprintf("readmodel: projection %q partition %d: checkpoint is not %d", e.Projection, e.Partition, e.Expected)
	if e.Expected < 0 {
		s = fmt.Sprintf("readmodel: projection %q partition %d: a checkpoint exists where none was expected", e.Projection, e.Partition)
	}
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s + ": another runner advanced it"
}

func (e *ConflictError) Is(target error) bool { return target == ErrCheckpointConflict }

// PoisonError is returned by a runner whose [Config.OnPoison] is [Stop]
// when an event cannot be decoded or a handler keeps failing on it. The
// event was neither applied nor skipped: the checkpoint stays before it.
type PoisonError struct {
	Projection string
	Event      ParkedEvent
	Err        error
}

func (e *PoisonError) Error() string {
	return fmt.Sprintf("readmodel: projection %q: poison event %s (%s %s v%d, %s): %s",
		e.Projection, e.Event.Position, e.Event.StreamID, e.Event.Name, e.Event.StreamVersion, e.Event.Cause, e.Event.Reason)
}

func (e *PoisonError) Unwrap() []error { return []error{ErrPoison, e.Err} }

// ErrorClass is [esmill.Poison].
func (e *PoisonError) ErrorClass() esmill.Class { return esmill.Poison }

// PanicError is a handler panic, turned into a handler error.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("readmodel: handler panic: %v", e.Value) }

// ErrorClass is [esmill.Poison]: the event is parked at once, as a panic
// is poison in every layer.
func (e *PanicError) ErrorClass() esmill.Class { return esmill.Poison }

// NotParkedError details an [ErrNotParked].
type NotParkedError struct {
	Projection string
	Position   Position
}

func (e *NotParkedError) Error() string {
	return fmt.Sprintf("readmodel: projection %q has no event parked at %s (it was never parked, or was replayed or skipped already; list them with Store.Parked)", e.Projection, e.Position)
}

// Is reports whether target is [ErrNotParked].
func (e *NotParkedError) Is(target error) bool { return target == ErrNotParked }

// WriteError is the failure of a write that a handler queued and that the
// store sent later, with the other writes of the batch (see
// postgres.Queue). It names the position of the event whose handler
// queued the write, so that the runner retries or parks that event as if
// its handler had failed; stores return it from a later handle call or
// from [Tx.Commit].
type WriteError struct {
	Position Position
	Err      error
}

func (e *WriteError) Error() string {
	return fmt.Sprintf("readmodel: queued write of the event at %s failed: %v", e.Position, e.Err)
}

// Unwrap returns the store's error.
func (e *WriteError) Unwrap() error { return e.Err }
