package esmill

import "errors"

// ErrClosed is matched (errors.Is) by the error of every esmill component
// used after its Close: each package has its own ErrClosed, named for what
// was closed (aggregate.ErrClosed for an executor, sierradb.ErrClosed for a
// client or subscription, ...), and each of them matches this one.
var ErrClosed = errors.New("esmill: closed")

// ClosedError is the type of the packages' own ErrClosed values: its text
// names what was closed, and errors.Is matches it against [ErrClosed].
type ClosedError struct {
	// Text is the error's text, for example "aggregate: executor closed".
	Text string
}

func (e *ClosedError) Error() string { return e.Text }

// Is reports whether target is [ErrClosed].
func (e *ClosedError) Is(target error) bool { return target == ErrClosed }
