package aggregate

import (
	"errors"
	"fmt"
	"time"

	"github.com/esmill/esmill/sierradb"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrRejected: a command handler returned an error (a business
	// rule). The error is a [*RejectedError] wrapping the handler's error.
	// Retrying will not help.
	ErrRejected = errors.New("aggregate: command rejected")
	// ErrUnknownCommand: no handler is registered for the command.
	ErrUnknownCommand = errors.New("aggregate: unknown command")
	// ErrUnknownEvent: an event type or stored event name is not
	// registered with On.
	ErrUnknownEvent = errors.New("aggregate: unknown event")
	// ErrEventDecode: a stored event could not be decoded.
	ErrEventDecode = errors.New("aggregate: event does not decode")
	// ErrVersionGap: a stream's versions are not contiguous.
	ErrVersionGap = errors.New("aggregate: gap in stream versions")
	// ErrTooManyConflicts: the command kept meeting concurrent writes.
	ErrTooManyConflicts = errors.New("aggregate: too many write conflicts")
	// ErrPanic: user code panicked.
	ErrPanic = errors.New("aggregate: panic in user code")
	// ErrPartitionKeyMismatch: a command named another partition key than
	// the one the entity uses.
	ErrPartitionKeyMismatch = errors.New("aggregate: partition key mismatch")
	// ErrRateLimited: the entity's own rate limit for the command is used
	// up.
	ErrRateLimited = errors.New("aggregate: rate limit exceeded")
	// ErrInvalidID: the id does not make a valid stream id.
	ErrInvalidID = errors.New("aggregate: invalid entity id")
	// ErrClosed: the executor was closed.
	ErrClosed = errors.New("aggregate: executor closed")
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

// PanicError is a panic in a handler or applier, recovered.
type PanicError struct {
	StreamID string
	Value    any
	Stack    []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("aggregate: panic in %s: %v", e.StreamID, e.Value)
}

func (e *PanicError) Is(target error) bool { return target == ErrPanic }

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
