package cqrs

import (
	"errors"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/sierradb"
)

// Kinds of [RemoteError].
const (
	KindRejected        = "rejected"
	KindExpectedVersion = "expected_version"
	KindRateLimited     = "rate_limited"
	KindUnknownCommand  = "unknown_command"
	KindBadCommand      = "bad_command"
	KindConflict        = "conflict"
	KindPanic           = "panic"
	KindInternal        = "internal"
)

var (
	// ErrTimeout: no reply came before the context or the bus timeout
	// ended. The command may still run.
	ErrTimeout = errors.New("cqrs: no reply in time")
	// ErrClosed: the bus was closed. It matches esmill.ErrClosed.
	ErrClosed error = &esmill.ClosedError{Text: "cqrs: command bus closed"}
)

// RemoteError is a command's failure as reported by the router that ran
// it. errors.Is matches it against the aggregate sentinels of its kind
// (ErrRejected, ErrRateLimited, ...), sierradb.ErrWrongExpectedVersion and
// ErrBadCommand.
type RemoteError struct {
	Kind string `json:"kind"`
	// Code is the handler error's code, if it has an ErrorCode() string
	// method, so that callers in other processes can branch on a business
	// error.
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
	// Class is the error's [esmill.Class] as the router classified it
	// ("final", "poison" or "transient"), so that a caller in another
	// process classifies the failure alike.
	Class string `json:"class,omitempty"`
}

func (e *RemoteError) Error() string { return "cqrs: remote: " + e.Message }

// ErrorCode returns the handler error's code ("" if it had none), so that
// code checking business errors by code treats local and remote ones alike.
func (e *RemoteError) ErrorCode() string { return e.Code }

// ErrorClass returns the class the router reported, or else the class of
// the kind: final for a rejection, a wrong expected version or a rate
// limit, poison for an unknown or bad command or a panic, transient
// otherwise.
func (e *RemoteError) ErrorClass() esmill.Class {
	switch e.Class {
	case esmill.Final.String():
		return esmill.Final
	case esmill.Poison.String():
		return esmill.Poison
	case esmill.Transient.String():
		return esmill.Transient
	}
	switch e.Kind {
	case KindRejected, KindExpectedVersion, KindRateLimited:
		return esmill.Final
	case KindUnknownCommand, KindBadCommand, KindPanic:
		return esmill.Poison
	}
	return esmill.Transient
}

// Is maps the kind onto sentinels.
func (e *RemoteError) Is(target error) bool {
	switch target {
	case aggregate.ErrRejected:
		return e.Kind == KindRejected
	case sierradb.ErrWrongExpectedVersion:
		return e.Kind == KindExpectedVersion
	case aggregate.ErrRateLimited:
		return e.Kind == KindRateLimited
	case aggregate.ErrUnknownCommand:
		return e.Kind == KindUnknownCommand
	case ErrBadCommand:
		return e.Kind == KindBadCommand || e.Kind == KindUnknownCommand
	case aggregate.ErrTooManyConflicts:
		return e.Kind == KindConflict
	case aggregate.ErrPanic:
		return e.Kind == KindPanic
	}
	return false
}

// remoteError classifies an error for a reply.
func remoteError(err error) *RemoteError {
	re := &RemoteError{Kind: KindInternal, Message: err.Error(), Class: esmill.Classify(err).String()}
	switch {
	case errors.Is(err, aggregate.ErrUnknownCommand):
		re.Kind = KindUnknownCommand
	case errors.Is(err, ErrBadCommand):
		re.Kind = KindBadCommand
	case errors.Is(err, aggregate.ErrRejected):
		re.Kind = KindRejected
		var coded interface{ ErrorCode() string }
		if errors.As(err, &coded) {
			re.Code = coded.ErrorCode()
		}
	case errors.Is(err, aggregate.ErrRateLimited):
		re.Kind = KindRateLimited
	case errors.Is(err, aggregate.ErrTooManyConflicts):
		re.Kind = KindConflict
	case errors.Is(err, sierradb.ErrWrongExpectedVersion):
		re.Kind = KindExpectedVersion
	case errors.Is(err, aggregate.ErrPanic):
		re.Kind = KindPanic
	}
	return re
}
