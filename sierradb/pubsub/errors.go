package pubsub

import (
	"errors"
	"fmt"

	"github.com/esmill/esmill"
)

// Sentinel errors. Test for them with errors.Is.
var (
	// ErrClosed: the publisher or subscriber was closed. It matches
	// esmill.ErrClosed.
	ErrClosed error = &esmill.ClosedError{Text: "sierradb/pubsub: publisher or subscriber closed"}
	// ErrInvalidTopic: a topic does not name a stream SierraDB accepts, or
	// is a subscribe-only topic (a category or the all-events topic) given
	// to Publish. The error is a [*TopicError].
	ErrInvalidTopic = errors.New("sierradb/pubsub: invalid topic")
	// ErrInvalidMessage: a message cannot become an event, for example
	// because a reserved metadata key holds a malformed value. The error is
	// a [*MessageError].
	ErrInvalidMessage = errors.New("sierradb/pubsub: invalid message")
)

// TopicError reports a topic that cannot be used.
type TopicError struct {
	Topic string
	// Reason says what is wrong with it.
	Reason string
	// Err is the underlying error, if any (for a stream id SierraDB would
	// reject, a [*sierradb.InvalidStreamIDError]).
	Err error
}

func (e *TopicError) Error() string {
	s := fmt.Sprintf("sierradb/pubsub: topic %q: %s", e.Topic, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is reports whether target is [ErrInvalidTopic].
func (e *TopicError) Is(target error) bool { return target == ErrInvalidTopic }

// ErrorClass is [esmill.Poison]: the same topic fails again.
func (e *TopicError) ErrorClass() esmill.Class { return esmill.Poison }

// Unwrap returns the underlying error.
func (e *TopicError) Unwrap() error { return e.Err }

// MessageError reports a message that cannot be turned into an event.
type MessageError struct {
	// UUID is the message's UUID.
	UUID string
	// Key is the metadata key at fault, if any.
	Key string
	// Reason says what is wrong.
	Reason string
	// Err is the underlying error, if any.
	Err error
}

func (e *MessageError) Error() string {
	s := fmt.Sprintf("sierradb/pubsub: message %q", e.UUID)
	if e.Key != "" {
		s += fmt.Sprintf(", metadata %s", e.Key)
	}
	s += ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is reports whether target is [ErrInvalidMessage].
func (e *MessageError) Is(target error) bool { return target == ErrInvalidMessage }

// ErrorClass is [esmill.Poison]: the same message fails again.
func (e *MessageError) ErrorClass() esmill.Class { return esmill.Poison }

// Unwrap returns the underlying error.
func (e *MessageError) Unwrap() error { return e.Err }
