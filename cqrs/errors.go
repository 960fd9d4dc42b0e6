package cqrs

import (
	"errors"

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

// ErrTimeout: no reply came before the context or the bus timeout ended.
var ErrTimeout = errors.New("cqrs: no reply in time")

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
}

func (e *RemoteError) Error() string { return "cqrs: remote: " + e.Message }

// ErrorCode returns the handler error's code ("" if it had none), so that
// code checking business errors by code treats local and remote ones alike.
func (e *RemoteError) ErrorCode() string { return e.Code }

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
	re := &RemoteError{Kind: KindInternal, Message: err.Error()}
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

// IsFinal reports whether err is a final outcome of a command: running it
// again cannot change the answer (a business rejection, a wrong expected
// version, an entity rate limit, an unknown or undecodable command, a
// panic in user code). Retry middleware should not retry it.
func IsFinal(err error) bool {
	if err == nil {
		return false
	}
	var ev *aggregate.ExpectedVersionError
	return errors.Is(err, aggregate.ErrRejected) || errors.As(err, &ev) ||
		errors.Is(err, aggregate.ErrRateLimited) || errors.Is(err, aggregate.ErrUnknownCommand) ||
		errors.Is(err, ErrBadCommand) || errors.Is(err, aggregate.ErrPanic) || errors.Is(err, aggregate.ErrInvalidID) ||
		errors.Is(err, aggregate.ErrPartitionKeyMismatch) || errors.Is(err, aggregate.ErrEventDecode) ||
		errors.Is(err, aggregate.ErrUnknownEvent)
}
