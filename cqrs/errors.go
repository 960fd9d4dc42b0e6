package cqrs

import (
	"errors"
	"fmt"

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
	// KindParked: the command was parked on a poison topic (its retries
	// ran out, or it cannot succeed) and will not run unless an operator
	// re-drives it. The message says why.
	KindParked = "parked"
)

// ErrParked is matched by the error of a command that a retry middleware
// parked (see [CommandRouter.AnswerParked]).
var ErrParked = errors.New("cqrs: command parked")

var (
	// ErrTimeout: no reply came before the context or the bus timeout
	// ended (or the context was cancelled). The command may still run:
	// the error is a [*TimeoutError], which names the command id to
	// retry it with.
	ErrTimeout = errors.New("cqrs: no reply in time")
	// ErrPartitionMismatch is matched by a [*PartitionMismatchError].
	ErrPartitionMismatch = errors.New("cqrs: partition counts differ")
	// ErrClosed: the bus was closed. It matches esmill.ErrClosed.
	ErrClosed error = &esmill.ClosedError{Text: "cqrs: command bus closed"}
)

// TimeoutError reports an Execute that ended without a reply: its context
// ended or was cancelled, or the bus timeout passed. The outcome is
// unknown: the command may have run, may run later, or not at all.
// Calling Execute again with the same arguments on the same bus (within
// BusConfig.RetryWindow) retries it under the same command id, so it runs
// at most once; so does WithCommandID(CommandID) from anywhere.
type TimeoutError struct {
	Command   string
	EntityID  string
	CommandID string
	// Err is the context's error.
	Err error
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("cqrs: no reply in time for %s to %s (command id %s; %v): the outcome is unknown; "+
		"call Execute again with the same arguments on this bus, or with cqrs.WithCommandID(%q), to retry it without running it twice",
		e.Command, e.EntityID, e.CommandID, e.Err, e.CommandID)
}

func (e *TimeoutError) Unwrap() []error { return []error{ErrTimeout, e.Err} }

// ErrorClass is [esmill.Transient]: retrying with the same command id is
// safe.
func (e *TimeoutError) ErrorClass() esmill.Class { return esmill.Transient }

// ErrReplyNotSent is matched by a [*ReplyNotSentError].
var ErrReplyNotSent = errors.New("cqrs: reply not sent")

// ReplyNotSentError is what a command router's handler returns when the
// ReplyPublisher refused the reply to a command it handled (the reply
// topic's Redis master died, say): the command message is not acked, so
// the transport delivers it again; the executor recognises its command id
// and does not run it twice, and the router answers it then (Idempotent,
// when its events were stored the first time). It is transient: a Retry
// middleware retries it. Without it, the caller would wait for a reply
// that was never sent (tested: TestReplyNotSentIsRedelivered).
type ReplyNotSentError struct {
	// MessageUUID is the command message's UUID (its command id); Topic
	// the reply topic.
	MessageUUID, Topic string
	// Err is the publisher's error.
	Err error
}

func (e *ReplyNotSentError) Error() string {
	return fmt.Sprintf("cqrs: the reply to command message %s could not be published to %q (%v): "+
		"the command message is not acked, so that it is delivered again and answered then; check the reply topic's transport",
		e.MessageUUID, e.Topic, e.Err)
}

func (e *ReplyNotSentError) Unwrap() []error { return []error{ErrReplyNotSent, e.Err} }

// ErrorClass is [esmill.Transient]: the command runs once however often
// its message is delivered.
func (e *ReplyNotSentError) ErrorClass() esmill.Class { return esmill.Transient }

// PartitionMismatchError reports a bus and routers that spread commands
// over different partition counts: commands would sit in topics nobody
// reads, or one entity's commands would run in two partitions, out of
// order.
type PartitionMismatchError struct {
	// Group is the routers' lease group, when the bus found the mismatch.
	Group string
	// Sender is the bus's count, Router the routers'.
	Sender, Router int
}

func (e *PartitionMismatchError) Error() string {
	if e.Group != "" {
		return fmt.Sprintf("cqrs: this bus spreads commands over %d partitions, but the routers of group %q run with %d: "+
			"give the bus (BusConfig.Partitions) and every router (RouterConfig.Partitions) the same count", e.Sender, e.Group, e.Router)
	}
	return fmt.Sprintf("cqrs: the command was sent for %d partitions, but this router runs with %d: "+
		"give the bus (BusConfig.Partitions) and every router (RouterConfig.Partitions) the same count", e.Sender, e.Router)
}

func (e *PartitionMismatchError) Is(target error) bool { return target == ErrPartitionMismatch }

// ErrorClass is [esmill.Poison]: a configuration error, which no retry
// fixes.
func (e *PartitionMismatchError) ErrorClass() esmill.Class { return esmill.Poison }

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
	case ErrParked:
		return e.Kind == KindParked
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
