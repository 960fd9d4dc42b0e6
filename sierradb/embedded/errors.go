package embedded

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/google/uuid"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/sierradb"
)

// Error texts sent on the wire, identical to SierraDB 0.3.1's. The parser
// texts are assembled by the helpers in args.go the way SierraDB's parser
// assembles them; the conformance suite compares them with the real
// server's.
const (
	msgExpectedArray      = "expected array command"
	msgEmptyCommand       = "empty command"
	msgInvalidCommandType = "INVALIDARG invalid type for command name"
	msgUnknownCommand     = "INVALIDARG unknown command '%s'"

	msgStrictAny    = "INVALIDARG strict versioning mode rejects EXPECTED_VERSION any"
	msgStrictExists = "INVALIDARG strict versioning mode rejects EXPECTED_VERSION exists"

	msgStartVersionPlus   = "INVALIDARG start version cannot be '+'"
	msgEndVersionMinus    = "INVALIDARG end version cannot be '-'"
	msgStartSequencePlus  = "INVALIDARG start sequence cannot be '+'"
	msgEndSequenceMinus   = "INVALIDARG end sequence cannot be '-'"
	msgTimestampFormat    = "INVALIDARG invalid timestamp format: expected milliseconds, got nanoseconds"
	msgEventIDHash        = "the event id must embed the partition hash"
	msgEventIDHashInvalid = "INVALIDARG the event id must embed the partition hash"
	msgStreamIDLength     = "INVALIDARG stream id must be between 1 and 64 characters in length, but got %d for '%s'"
	msgStreamIDNul        = "INVALIDARG stream id cannot contain null bytes"

	msgWrongVersion = "WRONGVER current stream version is %s but expected %s for partition key %s and stream id %s"

	msgDBOpFailed           = "DBOPFAILED database operation failed: "
	msgPartitionKeyMismatch = msgDBOpFailed + "partition key must be the same for all events in a stream: expected %s, got %s"
	msgSegmentExceeded      = msgDBOpFailed + "events exceed the size of a single segment"
	msgSystemTime           = msgDBOpFailed + "system time is incorrect"
	msgEventNameTooLong     = msgDBOpFailed + "event name too long"
	msgServerClosed         = msgDBOpFailed + "server closed"
	msgPartitionFull        = msgDBOpFailed + "partition %d is full: it holds the most events the embedded server keeps in one partition (%d)"

	msgSubscriptionNotFound = "NOTFOUND subscription not found"
	msgAckFailed            = "failed to acknowledge events"
	msgPartitionUnavailable = "CLUSTERDOWN partition unavailable"
	msgUnsupportedVersion   = "unsupported version %s, only 3 is supported"

	// Resource limits of the embedded server (no equivalent on SierraDB).
	msgTooManyConns    = "TRYAGAIN too many connections: the server allows %d (MaxConnections); close idle connections or raise the limit"
	msgTooManySubs     = "INVALIDARG too many subscriptions on this connection: at most %d (MaxSubscriptionsPerConn); open another connection or raise the limit"
	msgFrameTooLarge   = "INVALIDARG request too large: a request may take %d bytes once decoded (MaxFrameBytes); send smaller requests or raise the limit"
	msgFrameBudgetBusy = "TRYAGAIN server busy: the %d bytes for requests in flight (MaxTotalFrameBytes) are in use; retry later"

	// Parser texts, as SierraDB's combine-based parser words them.
	msgAlreadySpecified = "INVALIDARG %s already specified"
	msgEndOfInput       = "INVALIDARG unexpected end of input: expected %s"
	msgUnexpected       = "INVALIDARG unexpected %s: expected %s"
	msgInvalid          = "INVALIDARG invalid %s"
	msgMinNumber        = "INVALIDARG number %d must not be less than %d"
	msgMissingEquals    = "INVALIDARG missing `=` in stream id version"
	msgBadStreamVersion = "INVALIDARG invalid stream id version number"
	msgNoEvents         = "INVALIDARG unexpected end of input: expected stream id"
)

// cmdError is an error reply, held as the exact text sent on the wire.
type cmdError string

func (e cmdError) Error() string { return string(e) }

func errorf(format string, args ...any) cmdError { return cmdError(fmt.Sprintf(format, args...)) }

// wrongVersionError is a WRONGVER reply with its parts kept, so that the
// direct API can return a [sierradb.WrongExpectedVersionError].
type wrongVersionError struct {
	key      uuid.UUID
	streamID string
	current  int64 // -1: empty
	expected sierradb.ExpectedVersion
}

func (e *wrongVersionError) Error() string {
	cur := "empty"
	if e.current >= 0 {
		cur = strconv.FormatInt(e.current, 10)
	}
	return fmt.Sprintf(msgWrongVersion, cur, e.expected, e.key, e.streamID)
}

// wireText returns the error text to send for err.
func wireText(err error) string {
	var ce cmdError
	if errors.As(err, &ce) {
		return string(ce)
	}
	var wv *wrongVersionError
	if errors.As(err, &wv) {
		return wv.Error()
	}
	if errors.Is(err, ErrClosed) {
		return msgServerClosed
	}
	return msgDBOpFailed + err.Error()
}

// publicError turns an internal error into what the direct API returns: the
// error types of package sierradb, as a client would have decoded the reply.
func publicError(err error) error {
	if err == nil || errors.Is(err, ErrClosed) {
		return err
	}
	var wv *wrongVersionError
	if errors.As(err, &wv) {
		return &sierradb.WrongExpectedVersionError{
			StreamID:     wv.streamID,
			PartitionKey: wv.key,
			Current:      wv.current,
			Expected:     wv.expected,
			Parsed:       true,
			Server:       sierradb.ParseServerError(wv.Error()),
		}
	}
	return sierradb.ParseServerError(wireText(err))
}

// Errors of the Go API (not wire replies).
var (
	// ErrClosed is returned by the direct API after [Server.Close]. It
	// matches esmill.ErrClosed.
	ErrClosed error = &esmill.ClosedError{Text: "embedded: server closed"}
	// ErrCorruptLog is matched by every [*CorruptLogError].
	ErrCorruptLog = errors.New("embedded: corrupt log")
	// ErrIncompatibleDir is returned by [Start] when Config.Dir holds data
	// written with another partition count or another format.
	ErrIncompatibleDir = errors.New("embedded: incompatible data directory")
	// ErrDirLocked is returned by [Start] when another server holds
	// Config.Dir.
	ErrDirLocked = errors.New("embedded: data directory in use")
)

// CorruptLogError reports damage inside a partition log that a crash during
// the last write cannot leave: a full-length record that fails its checksum
// (the last one too), a record header that fails its checksum followed by
// anything but zeros, a record whose checksums match but whose content is
// wrong, or a file that is not a partition log. Offset is the start of the
// damaged record. [Start] refuses to open such a directory rather than drop
// acknowledged events, unless Config.Salvage is set.
type CorruptLogError struct {
	Path   string
	Offset int64
	Reason string
}

func (e *CorruptLogError) Error() string {
	return fmt.Sprintf("embedded: corrupt log %s at offset %d: %s", e.Path, e.Offset, e.Reason)
}

// Is reports whether target is [ErrCorruptLog].
func (e *CorruptLogError) Is(target error) bool { return target == ErrCorruptLog }
