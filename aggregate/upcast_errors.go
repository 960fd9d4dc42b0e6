package aggregate

import (
	"errors"
	"fmt"
)

// Sentinel errors of event versioning; test with errors.Is. Both come
// inside an [*EventDecodeError], so they also match [ErrEventDecode] and
// are classified as decode errors (poison) wherever events are read.
var (
	// ErrUpcast: an upcaster failed on a stored event. The error is an
	// [*UpcastError].
	ErrUpcast = errors.New("aggregate: upcaster failed")
	// ErrEventTooNew: a stored event has a schema version above every
	// version this code knows for its name: newer code wrote it. The error
	// is an [*EventTooNewError].
	ErrEventTooNew = errors.New("aggregate: event written by newer code")
)

// UpcastError is an upcaster's error on a stored event (a panic in it
// included, matching [ErrPanic]). The [*EventDecodeError] around it names
// the stream, the stream version, the stored name and the stored schema
// version; From and To name the step that failed, which may be a later one
// of a chain.
type UpcastError struct {
	From, To EventSchema
	// Upcaster says how the failing upcaster was registered.
	Upcaster string
	Err      error
}

func (e *UpcastError) Error() string {
	return fmt.Sprintf("%s failed: %v; fix the upcaster, or the stored event if it is wrong", e.Upcaster, e.Err)
}

func (e *UpcastError) Unwrap() []error { return []error{ErrUpcast, e.Err} }

// EventTooNewError reports a stored event whose schema version is newer than
// any this code knows for its name: a newer version of the code wrote it.
// The [*EventDecodeError] around it names the stream and stream version.
type EventTooNewError struct {
	Name string
	// SchemaVersion is the stored event's schema version; Known the
	// highest this code reads for Name.
	SchemaVersion int
	Known         int
}

func (e *EventTooNewError) Error() string {
	return fmt.Sprintf("event %q has schema version %d but this code reads versions up to %d: it was written by a newer version of the code; deploy it",
		e.Name, e.SchemaVersion, e.Known)
}

func (e *EventTooNewError) Is(target error) bool { return target == ErrEventTooNew }
