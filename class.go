package esmill

import (
	"errors"
	"strconv"
)

// Class is what a failure means for the message (command or event) whose
// handling failed.
type Class int

const (
	// Transient: the same message may succeed later; retry it. Errors that
	// declare no class are transient.
	Transient Class = iota
	// Final: the message got its answer (a business rejection, a wrong
	// expected version, an entity rate limit); retrying cannot change it.
	Final
	// Poison: the message itself cannot be handled (undecodable, an
	// unknown command, an invalid id, a panic in user code); park it.
	Poison
)

func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case Final:
		return "final"
	case Poison:
		return "poison"
	}
	return "Class(" + strconv.Itoa(int(c)) + ")"
}

// Classifier is implemented by errors that declare their [Class].
type Classifier interface {
	error
	ErrorClass() Class
}

// Classify returns the class of err: the class declared by the outermost
// error in its chain that has an ErrorClass method (see [Classifier];
// errors.As finds it, through wrapping and errors.Join), otherwise
// [Transient]. A context deadline is transient too. Classify(nil) is
// Transient; callers classify failures only.
func Classify(err error) Class {
	c, _ := Declared(err)
	return c
}

// Declared returns the class err declares and true, or [Transient] and
// false when no error in its chain declares one. It tells a failure marked
// transient on purpose (retry it for as long as it takes) from one of
// unknown meaning (retry it up to a set number of times).
func Declared(err error) (Class, bool) {
	var c Classifier
	if errors.As(err, &c) {
		return c.ErrorClass(), true
	}
	return Transient, false
}

// MarkTransient marks err as [Transient]. A projection or reactor runner
// retries it for as long as it takes and never parks the event for it
// (tested: TestHandlerErrors). middleware.Retry retries it like any
// transient error, up to RetryConfig.MaxRetries, then parks the message.
// It returns nil for nil.
func MarkTransient(err error) error { return mark(err, Transient) }

// MarkFinal marks err as [Final]: answered, never retried (tested:
// TestClassify, TestRetry). It returns nil for nil.
func MarkFinal(err error) error { return mark(err, Final) }

// MarkPoison marks err as [Poison]: the message is parked at once, without
// retries. It returns nil for nil.
func MarkPoison(err error) error { return mark(err, Poison) }

func mark(err error, c Class) error {
	if err == nil {
		return nil
	}
	return &classified{err: err, class: c}
}

// classified is an error with a class attached. Its text is the wrapped
// error's.
type classified struct {
	err   error
	class Class
}

func (e *classified) Error() string     { return e.err.Error() }
func (e *classified) Unwrap() error     { return e.err }
func (e *classified) ErrorClass() Class { return e.class }
