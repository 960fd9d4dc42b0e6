package sierradb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/uuid"

	"github.com/esmill/esmill"
)

// Sentinel errors. Test for them with errors.Is.
var (
	// ErrWrongExpectedVersion: an append's expected version did not match
	// the stream. The error is a [*WrongExpectedVersionError].
	ErrWrongExpectedVersion = errors.New("sierradb: wrong expected version")
	// ErrNotFound: an event or subscription does not exist.
	ErrNotFound = errors.New("sierradb: not found")
	// ErrInvalidArgument: the server (or the client, before sending)
	// rejected an argument.
	ErrInvalidArgument = errors.New("sierradb: invalid argument")
	// ErrNotSierraDB: the server at the client's address answers, but is
	// not SierraDB. The error is a [*NotSierraDBError].
	ErrNotSierraDB = errors.New("sierradb: not a SierraDB server")
	// ErrClosed: the client or subscription was closed. It matches
	// esmill.ErrClosed.
	ErrClosed error = &esmill.ClosedError{Text: "sierradb: client or subscription closed"}
)

// Server error codes, the first word of a coded SierraDB error.
const (
	CodeInvalidArg          = "INVALIDARG"
	CodeWrongVersion        = "WRONGVER"
	CodeDBOpFailed          = "DBOPFAILED"
	CodeNotFound            = "NOTFOUND"
	CodeClusterDown         = "CLUSTERDOWN"
	CodeTimeout             = "TIMEOUT"
	CodeTryAgain            = "TRYAGAIN"
	CodeCircuitOpen         = "CIRCUITOPEN"
	CodeActorDown           = "ACTORDOWN"
	CodeActorStopped        = "ACTORSTOPPED"
	CodeMailboxFull         = "MAILBOXFULL"
	CodeInsufficientReplica = "INSUFFICIENTREPLICAS"
	CodeQuorumFailed        = "QUORUMFAILED"
	// CodeRemoteOpFailed: a node forwarded the request to another, which
	// failed it; the message carries the other node's error text without
	// its code.
	CodeRemoteOpFailed = "REMOTEOPFAILED"
	// CodeAllReplicasFailed: no replica of the partition took the write.
	CodeAllReplicasFailed = "ALLREPLICASFAILED"
)

// ServerError is an error reply from the server. Code is the leading
// upper-case word (WRONGVER, INVALIDARG, ...) or empty for the few errors
// SierraDB sends without a code; Message is the rest.
type ServerError struct {
	Code    string
	Message string
}

func (e *ServerError) Error() string {
	if e.Code == "" {
		return "sierradb: " + e.Message
	}
	return "sierradb: " + e.Code + " " + e.Message
}

// Is maps server codes onto the package sentinels.
func (e *ServerError) Is(target error) bool {
	switch target {
	case ErrWrongExpectedVersion:
		return e.Code == CodeWrongVersion
	case ErrNotFound:
		return e.Code == CodeNotFound
	case ErrInvalidArgument:
		return e.Code == CodeInvalidArg
	}
	return false
}

// ParseServerError splits an error reply into its code and message.
func ParseServerError(text string) *ServerError {
	code, msg, found := strings.Cut(text, " ")
	if isCode(code) {
		if !found {
			msg = ""
		}
		return &ServerError{Code: code, Message: msg}
	}
	return &ServerError{Message: text}
}

func isCode(s string) bool {
	if len(s) < 2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// serverError turns an error reply into the most specific error type.
//
// A version conflict found by a partition's coordinator reaches a client
// of another node as REMOTEOPFAILED carrying WRONGVER's text (once per
// hop, TestKnownDifferenceForwardedWrongVersion); it is the same conflict,
// so it becomes the same [*WrongExpectedVersionError], with Server the
// REMOTEOPFAILED reply.
func serverError(text string) error {
	se := ParseServerError(text)
	switch se.Code {
	case CodeWrongVersion:
		return parseWrongVersion(se)
	case CodeRemoteOpFailed:
		if i := strings.Index(se.Message, wrongVersionPrefix); i >= 0 {
			w := parseWrongVersion(&ServerError{Code: CodeWrongVersion, Message: se.Message[i:]})
			w.Server = se
			return w
		}
	}
	return se
}

const wrongVersionPrefix = "current stream version is "

// WrongExpectedVersionError is the detail of a WRONGVER reply. When the
// server's text has an unexpected shape, Parsed is false and only Server is
// meaningful; the error still matches [ErrWrongExpectedVersion].
type WrongExpectedVersionError struct {
	StreamID     string
	PartitionKey uuid.UUID
	// Current is the stream's version, or -1 when the stream is empty.
	Current int64
	// Expected is what the append expected.
	Expected ExpectedVersion
	Parsed   bool
	Server   *ServerError
}

func (e *WrongExpectedVersionError) Error() string {
	if !e.Parsed {
		return e.Server.Error()
	}
	cur := "empty"
	if e.Current >= 0 {
		cur = strconv.FormatInt(e.Current, 10)
	}
	return fmt.Sprintf("sierradb: wrong expected version for stream %q: current %s, expected %s", e.StreamID, cur, e.Expected)
}

// Is reports whether target is [ErrWrongExpectedVersion].
func (e *WrongExpectedVersionError) Is(target error) bool { return target == ErrWrongExpectedVersion }

// Unwrap returns the server error.
func (e *WrongExpectedVersionError) Unwrap() error { return e.Server }

// parseWrongVersion reads "current stream version is <cur> but expected
// <exp> for partition key <uuid> and stream id <sid>". It never fails: an
// unexpected text gives Parsed == false (tested: FuzzParseServerError,
// TestParseWrongVersion).
func parseWrongVersion(se *ServerError) *WrongExpectedVersionError {
	e := &WrongExpectedVersionError{Server: se, Current: -1}
	rest, ok := strings.CutPrefix(se.Message, wrongVersionPrefix)
	if !ok {
		return e
	}
	cur, rest, ok := strings.Cut(rest, " but expected ")
	if !ok {
		return e
	}
	exp, rest, ok := strings.Cut(rest, " for partition key ")
	if !ok {
		return e
	}
	key, sid, ok := strings.Cut(rest, " and stream id ")
	if !ok {
		return e
	}
	current := int64(-1)
	if cur != "empty" {
		n, err := strconv.ParseInt(cur, 10, 64)
		if err != nil || n < 0 {
			return e
		}
		current = n
	}
	ev, err := ParseExpectedVersion(exp)
	if err != nil {
		return e
	}
	pk, err := uuid.Parse(key)
	if err != nil {
		return e
	}
	e.Current = current
	e.Expected, e.PartitionKey, e.StreamID, e.Parsed = ev, pk, sid, true
	return e
}

// NotSierraDBError reports a server whose HELLO reply is not SierraDB's.
type NotSierraDBError struct {
	Addr string
	// Reply says what the server answered instead.
	Reply string
}

func (e *NotSierraDBError) Error() string {
	return fmt.Sprintf("sierradb: the server at %s is not SierraDB (HELLO gave %s): point Config.Addr at a SierraDB server", e.Addr, e.Reply)
}

// Is reports whether target is [ErrNotSierraDB].
func (e *NotSierraDBError) Is(target error) bool { return target == ErrNotSierraDB }

// InvalidStreamIDError reports a stream id that SierraDB would reject.
type InvalidStreamIDError struct {
	StreamID string
	Reason   string
}

func (e *InvalidStreamIDError) Error() string {
	id := e.StreamID
	if len(id) > 80 {
		id = id[:80] + "..."
	}
	return fmt.Sprintf("sierradb: invalid stream id %q: %s", id, e.Reason)
}

// Is reports whether target is [ErrInvalidArgument].
func (e *InvalidStreamIDError) Is(target error) bool { return target == ErrInvalidArgument }

// retryableCodes are the server codes that describe a transient condition:
// the ones SierraDB's own client retries, plus the replication failures of a
// cluster that a later attempt can pass.
var retryableCodes = map[string]bool{
	CodeTryAgain: true, CodeTimeout: true, CodeCircuitOpen: true,
	CodeActorDown: true, CodeActorStopped: true, CodeMailboxFull: true,
	CodeInsufficientReplica: true, CodeQuorumFailed: true,
}

// IsRetryable reports whether err is transient, so that the same request may
// succeed if sent again: a connection failure or one of SierraDB's transient
// server codes. A cancelled or expired context, a closed client, a wrong
// expected version and every invalid-argument error are not retryable.
//
// Retrying an append after a connection failure is safe only with an exact
// expected version: if the first attempt was stored, the retry fails with
// [ErrWrongExpectedVersion] instead of writing twice.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrClosed) {
		return false
	}
	var se *ServerError
	if errors.As(err, &se) {
		return retryableCodes[se.Code]
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}
