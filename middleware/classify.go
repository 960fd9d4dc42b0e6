package middleware

import (
	"context"
	"errors"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/sierradb"
)

// Class is what a handler's error means for the message.
type Class int

const (
	// Transient: the same message may succeed later; retry it.
	Transient Class = iota
	// Final: the command got its answer (a business rejection, a wrong
	// expected version, an entity rate limit); retrying cannot help.
	Final
	// Poison: the message itself cannot be handled (undecodable, unknown
	// command, a panic in user code); park it.
	Poison
)

func (c Class) String() string {
	switch c {
	case Final:
		return "final"
	case Poison:
		return "poison"
	}
	return "transient"
}

// Classify sorts an error into a [Class].
func Classify(err error) Class {
	switch {
	case errors.Is(err, cqrs.ErrBadCommand), errors.Is(err, aggregate.ErrUnknownCommand),
		errors.Is(err, aggregate.ErrEventDecode), errors.Is(err, aggregate.ErrUnknownEvent),
		errors.Is(err, aggregate.ErrPanic), errors.Is(err, aggregate.ErrInvalidID),
		errors.Is(err, aggregate.ErrVersionGap):
		return Poison
	case errors.Is(err, aggregate.ErrTooManyConflicts), errors.Is(err, aggregate.ErrLockTimeout),
		errors.Is(err, ErrRateLimited), errors.Is(err, aggregate.ErrTxContention),
		errors.Is(err, context.DeadlineExceeded), sierradb.IsRetryable(err):
		return Transient
	case cqrs.IsFinal(err):
		return Final
	}
	return Transient
}
