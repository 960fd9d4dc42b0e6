package aggregate

import (
	"errors"
	"fmt"
	"time"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/sierradb"
)

// Sentinel errors; test with errors.Is. Each declares the [esmill.Class] of
// its errors (esmill.Classify): final for an answer that running the
// command again cannot change, poison for a command that cannot be handled,
// transient for a failure that may pass.
var (
	// ErrRejected: a command handler returned an error (a business
	// rule). The error is a [*RejectedError] wrapping the handler's error.
	// Retrying will not help.
	ErrRejected = esmill.MarkFinal(errors.New("aggregate: command rejected"))
	// ErrUnknownCommand: no handler is registered for the command.
	ErrUnknownCommand = esmill.MarkPoison(errors.New("aggregate: unknown command"))
	// ErrUnknownEvent: an event type or stored event name is not
	// registered with On.
	ErrUnknownEvent = esmill.MarkPoison(errors.New("aggregate: unknown event"))
	// ErrEventDecode: a stored event could not be decoded.
	ErrEventDecode = esmill.MarkPoison(errors.New("aggregate: event does not decode"))
	// ErrVersionGap: a stream's versions are not contiguous.
	ErrVersionGap = esmill.MarkPoison(errors.New("aggregate: gap in stream versions"))
	// ErrTooManyConflicts: the command kept meeting concurrent writes.
	ErrTooManyConflicts = esmill.MarkTransient(errors.New("aggregate: too many write conflicts"))
	// ErrPanic: user code panicked.
	ErrPanic = esmill.MarkPoison(errors.New("aggregate: panic in user code"))
	// ErrPartitionKeyMismatch: a command named another partition key than
	// the one the entity uses.
	ErrPartitionKeyMismatch = esmill.MarkFinal(errors.New("aggregate: partition key mismatch"))
	// ErrRateLimited: the entity's own rate limit for the command is used
	// up.
	ErrRateLimited = esmill.MarkFinal(errors.New("aggregate: rate limit exceeded"))
	// ErrInvalidID: the id does not make a valid stream id.
	ErrInvalidID = esmill.MarkPoison(errors.New("aggregate: invalid entity id"))
	// ErrClosed: the executor was closed. It matches esmill.ErrClosed.
	ErrClosed error = &esmill.ClosedError{Text: "aggregate: executor closed"}
)

// RejectedError is a command handler's error. errors.Is and errors.As see
// through it to the handler's own error.
type RejectedError struct {
	StreamID string
	Command  string
	Err      error
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("aggregate: %s rejected %s: %v", e.StreamID, e.Command, e.Err)
}

func (e *RejectedError) Unwrap() []error { return []error{ErrRejected, e.Err} }

// ErrorClass is [esmill.Final], unless the handler's error declares a class
// of its own (esmill.MarkTransient, for one: the handler met a failure
// that may pass).
func (e *RejectedError) ErrorClass() esmill.Class {
	if c, ok := esmill.Declared(e.Err); ok {
		return c
	}
	return esmill.Final
}

// UnknownCommandError reports a command that the entity type does not
// handle.
type UnknownCommandError struct {
	Category string
	Command  string
}

func (e *UnknownCommandError) Error() string {
	return fmt.Sprintf("aggregate: %s has no handler for command %q", e.Category, e.Command)
}

func (e *UnknownCommandError) Is(target error) bool { return target == ErrUnknownCommand }

// ErrorClass is [esmill.Poison].
func (e *UnknownCommandError) ErrorClass() esmill.Class { return esmill.Poison }

// CommandDecodeError reports a command message that does not decode.
type CommandDecodeError struct {
	Category string
	Command  string
	Err      error
}

func (e *CommandDecodeError) Error() string {
	return fmt.Sprintf("aggregate: %s command %q does not decode: %v", e.Category, e.Command, e.Err)
}

func (e *CommandDecodeError) Unwrap() error { return e.Err }

// ErrorClass is [esmill.Poison].
func (e *CommandDecodeError) ErrorClass() esmill.Class { return esmill.Poison }

// EventDecodeError reports a stored event that does not decode.
type EventDecodeError struct {
	StreamID string
	Version  uint64
	Name     string
	// SchemaVersion is the event's stored schema version (1 when its
	// metadata has none or does not decode).
	SchemaVersion int
	Err           error
}

func (e *EventDecodeError) Error() string {
	return fmt.Sprintf("aggregate: event %s@%d (%q, schema version %d) does not decode: %v", e.StreamID, e.Version, e.Name, e.SchemaVersion, e.Err)
}

func (e *EventDecodeError) Unwrap() []error { return []error{ErrEventDecode, e.Err} }

// ErrorClass is [esmill.Poison].
func (e *EventDecodeError) ErrorClass() esmill.Class { return esmill.Poison }

// VersionGapError reports a stream whose versions skip.
type VersionGapError struct {
	StreamID string
	Want     uint64
	Got      uint64
}

func (e *VersionGapError) Error() string {
	return fmt.Sprintf("aggregate: stream %s jumps from version %d to %d", e.StreamID, e.Want, e.Got)
}

func (e *VersionGapError) Is(target error) bool { return target == ErrVersionGap }

// ErrorClass is [esmill.Poison].
func (e *VersionGapError) ErrorClass() esmill.Class { return esmill.Poison }

// ExpectedVersionError reports a command whose expected version the entity
// does not have. It matches sierradb.ErrWrongExpectedVersion.
type ExpectedVersionError struct {
	StreamID string
	Current  int64
	Expected sierradb.ExpectedVersion
}

func (e *ExpectedVersionError) Error() string {
	return fmt.Sprintf("aggregate: %s is at version %d, the command expected %s", e.StreamID, e.Current, e.Expected)
}

func (e *ExpectedVersionError) Is(target error) bool {
	return target == sierradb.ErrWrongExpectedVersion
}

// ErrorClass is [esmill.Final]: the caller's expectation is answered.
func (e *ExpectedVersionError) ErrorClass() esmill.Class { return esmill.Final }

// ConflictError reports a command that kept meeting concurrent writes.
type ConflictError struct {
	StreamID string
	Attempts int
	Last     error
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("aggregate: %s: %d attempts met concurrent writes: %v", e.StreamID, e.Attempts, e.Last)
}

func (e *ConflictError) Unwrap() []error { return []error{ErrTooManyConflicts, e.Last} }

// ErrorClass is [esmill.Transient].
func (e *ConflictError) ErrorClass() esmill.Class { return esmill.Transient }

// PanicError is a panic in user code (a command handler, an idempotency
// check or an event applier), recovered.
type PanicError struct {
	// Where names the code that panicked, such as "the handler of command
	// Withdraw" or "the applier of event MoneyDeposited".
	Where string
	// StreamID is the entity's stream; empty in [Type.Decide], which has
	// no stream.
	StreamID string
	Value    any
	Stack    []byte
}

func (e *PanicError) Error() string {
	s := "aggregate: " + e.Where + " panicked"
	if e.StreamID != "" {
		s += " on " + e.StreamID
	}
	return fmt.Sprintf("%s: %v", s, e.Value)
}

func (e *PanicError) Is(target error) bool { return target == ErrPanic }

// ErrorClass is [esmill.Poison]: a panic is poison in every layer.
func (e *PanicError) ErrorClass() esmill.Class { return esmill.Poison }

// RateLimitError reports an entity's rate limit used up.
type RateLimitError struct {
	StreamID string
	Command  string
	Limit    RateLimit
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("aggregate: %s: %s limited to %d per %s", e.StreamID, e.Command, e.Limit.Max, e.Limit.Window)
}

func (e *RateLimitError) Is(target error) bool { return target == ErrRateLimited }

// ErrorClass is [esmill.Final].
func (e *RateLimitError) ErrorClass() esmill.Class { return esmill.Final }

// RateLimit allows at most Max commands of one name per entity in any
// sliding Window.
type RateLimit struct {
	Max    int
	Window time.Duration
}

// InvalidIDError reports an id that does not parse.
type InvalidIDError struct {
	Category string
	ID       string
	Err      error
}

func (e *InvalidIDError) Error() string {
	return fmt.Sprintf("aggregate: %q is not a valid %s id: %v", e.ID, e.Category, e.Err)
}

func (e *InvalidIDError) Unwrap() []error { return []error{ErrInvalidID, e.Err} }

// ErrorClass is [esmill.Poison].
func (e *InvalidIDError) ErrorClass() esmill.Class { return esmill.Poison }
