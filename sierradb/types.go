package sierradb

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

type expectKind uint8

const (
	expectAny expectKind = iota
	expectExists
	expectEmpty
	expectExact
)

// ExpectedVersion states what an append expects of its stream before the
// write. The zero value is [ExpectAny]. Under SierraDB's default strict
// versioning only [ExpectEmpty] and [ExpectVersion] are accepted.
type ExpectedVersion struct {
	kind    expectKind
	version uint64
}

var (
	// ExpectAny appends whatever the stream holds. It is sent as no
	// EXPECTED_VERSION at all; strict servers reject it.
	ExpectAny = ExpectedVersion{kind: expectAny}
	// ExpectExists requires at least one event; strict servers reject it.
	ExpectExists = ExpectedVersion{kind: expectExists}
	// ExpectEmpty requires the stream to have no event.
	ExpectEmpty = ExpectedVersion{kind: expectEmpty}
)

// ExpectVersion requires the stream's latest version to be exactly v, so the
// appended event gets v+1.
func ExpectVersion(v uint64) ExpectedVersion { return ExpectedVersion{kind: expectExact, version: v} }

// ExpectAfter returns the expectation for appending after a stream whose
// latest version is current, where -1 means the stream is empty.
func ExpectAfter(current int64) ExpectedVersion {
	if current < 0 {
		return ExpectEmpty
	}
	return ExpectVersion(uint64(current))
}

// IsAny reports whether e is [ExpectAny].
func (e ExpectedVersion) IsAny() bool { return e.kind == expectAny }

// IsEmpty reports whether e is [ExpectEmpty].
func (e ExpectedVersion) IsEmpty() bool { return e.kind == expectEmpty }

// IsExists reports whether e is [ExpectExists].
func (e ExpectedVersion) IsExists() bool { return e.kind == expectExists }

// Exact returns the version e requires and true, or false if e is not exact.
func (e ExpectedVersion) Exact() (uint64, bool) { return e.version, e.kind == expectExact }

// String returns the wire form: any, exists, empty or the number.
func (e ExpectedVersion) String() string {
	switch e.kind {
	case expectExists:
		return "exists"
	case expectEmpty:
		return "empty"
	case expectExact:
		return strconv.FormatUint(e.version, 10)
	}
	return "any"
}

// Matches reports whether a stream whose latest version is current (-1 when
// empty) satisfies e.
func (e ExpectedVersion) Matches(current int64) bool {
	switch e.kind {
	case expectExists:
		return current >= 0
	case expectEmpty:
		return current < 0
	case expectExact:
		return current >= 0 && uint64(current) == e.version
	}
	return true
}

// ParseExpectedVersion parses the wire form, case-insensitively.
func ParseExpectedVersion(s string) (ExpectedVersion, error) {
	switch strings.ToLower(s) {
	case "any":
		return ExpectAny, nil
	case "exists":
		return ExpectExists, nil
	case "empty":
		return ExpectEmpty, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return ExpectedVersion{}, fmt.Errorf("sierradb: invalid expected version %q", s)
	}
	return ExpectVersion(n), nil
}

// Event is a stored event as SierraDB returns it.
type Event struct {
	ID                uuid.UUID
	PartitionKey      uuid.UUID
	PartitionID       uint16
	TransactionID     uuid.UUID
	PartitionSequence uint64
	StreamVersion     uint64
	Timestamp         time.Time
	StreamID          string
	Name              string
	Metadata          []byte
	Payload           []byte

	// tag links an event delivered by a Subscription to its cursor.
	tag eventTag
}

// NewEvent is an event to append.
type NewEvent struct {
	// StreamID names the stream. Required.
	StreamID string
	// Name is the event name. Required, at most 255 bytes.
	Name string
	// ID is the event id. Optional: the server generates one. A given id
	// must embed the partition hash (see [NewEventID]).
	ID uuid.UUID
	// ExpectedVersion is what the stream must hold before this event.
	ExpectedVersion ExpectedVersion
	// Timestamp is the event time, kept in milliseconds. Optional: the
	// server's clock.
	Timestamp time.Time
	Payload   []byte
	Metadata  []byte
}

// AppendResult describes an event stored by [Client.Append].
type AppendResult struct {
	EventID           uuid.UUID
	PartitionKey      uuid.UUID
	PartitionID       uint16
	PartitionSequence uint64
	StreamVersion     uint64
	Timestamp         time.Time
}

// MultiAppendResult describes the events stored by one
// [Client.AppendMulti], in request order.
type MultiAppendResult struct {
	PartitionKey           uuid.UUID
	PartitionID            uint16
	FirstPartitionSequence uint64
	LastPartitionSequence  uint64
	Events                 []AppendedEvent
}

// AppendedEvent is one event of a [MultiAppendResult].
type AppendedEvent struct {
	EventID           uuid.UUID
	StreamID          string
	StreamVersion     uint64
	PartitionSequence uint64
	Timestamp         time.Time
}

// ScanPage is one page of a stream or partition scan.
type ScanPage struct {
	Events  []Event
	HasMore bool
}

// ServerInfo is the HELLO reply.
type ServerInfo struct {
	Server        string
	Version       string
	PeerID        string
	NumPartitions uint16
}
