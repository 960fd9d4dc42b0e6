package sierradb

import (
	"crypto/rand"
	"encoding/binary"
	"time"

	"github.com/google/uuid"
)

// DefaultPartitionCount is the number of partitions a SierraDB server has
// unless configured otherwise.
const DefaultPartitionCount = 32

// MaxStreamIDLen is the longest stream id SierraDB accepts, in bytes.
const MaxStreamIDLen = 64

// MaxEventNameLen is the longest event name SierraDB can store, in bytes.
const MaxEventNameLen = 255

// partitionKeyNamespace is the UUIDv5 namespace SierraDB derives default
// partition keys in: UUIDv5(DNS, "sierradb.tqwewe.com").
var partitionKeyNamespace = uuid.UUID{
	0x21, 0x9b, 0xd6, 0x37, 0xe2, 0x79, 0x53, 0xe9,
	0x9e, 0x2b, 0xea, 0xbe, 0x5d, 0x91, 0x20, 0xcc,
}

// PartitionKeyNamespace returns the UUIDv5 namespace of default partition
// keys, 219bd637-e279-53e9-9e2b-eabe5d9120cc.
func PartitionKeyNamespace() uuid.UUID { return partitionKeyNamespace }

// StreamPartitionKey returns the partition key SierraDB uses for a stream
// when none is given: UUIDv5 of the stream id in [PartitionKeyNamespace].
func StreamPartitionKey(streamID string) uuid.UUID {
	return uuid.NewSHA1(partitionKeyNamespace, []byte(streamID))
}

// PartitionHash returns the 16-bit partition hash of a UUID: bits 46 to 61
// of the UUID read as a big-endian 128-bit integer. It applies to partition
// keys and to event ids, which embed the hash of their partition key.
func PartitionHash(id uuid.UUID) uint16 {
	return uint16(binary.BigEndian.Uint64(id[8:16]) >> 46)
}

// PartitionID returns the partition a partition key maps to on a server with
// partitionCount partitions.
func PartitionID(partitionKey uuid.UUID, partitionCount uint16) uint16 {
	if partitionCount == 0 {
		partitionCount = DefaultPartitionCount
	}
	return PartitionHash(partitionKey) % partitionCount
}

// NewEventID returns a new event id for an event in the partition of
// partitionKey, laid out as SierraDB 0.3.1 generates them: a 48-bit
// millisecond time, 12 random bits, the nibble 7, the variant bits 10, the
// 16-bit partition hash (bits 46 to 61) and 46 random bits. The server
// accepts such an id and routes EGET by its hash.
//
// SierraDB writes its version nibble in the low half of byte 7, not byte 6
// as RFC 9562 does, so these ids do not report version 7 to a UUID library.
func NewEventID(partitionKey uuid.UUID) uuid.UUID {
	return NewEventIDAt(partitionKey, time.Now())
}

// NewEventIDAt is [NewEventID] with an explicit time.
func NewEventIDAt(partitionKey uuid.UUID, t time.Time) uuid.UUID {
	var id uuid.UUID
	_, _ = rand.Read(id[6:])
	ms := uint64(t.UnixMilli())
	id[0] = byte(ms >> 40)
	id[1] = byte(ms >> 32)
	id[2] = byte(ms >> 24)
	id[3] = byte(ms >> 16)
	id[4] = byte(ms >> 8)
	id[5] = byte(ms)
	id[7] = id[7]&0xF0 | 0x07
	return WithPartitionHash(id, PartitionHash(partitionKey))
}

// WithPartitionHash returns id with the partition hash h written into bits
// 46 to 61 and the RFC 4122 variant bits set.
func WithPartitionHash(id uuid.UUID, h uint16) uuid.UUID {
	id[8] = 0x80 | byte(h>>10)&0x3F
	id[9] = byte(h >> 2)
	id[10] = id[10]&0x3F | byte(h&3)<<6
	return id
}

// EventIDMatchesPartitionKey reports whether an event id embeds the partition
// hash of partitionKey, which SierraDB requires of a client-supplied id.
func EventIDMatchesPartitionKey(eventID, partitionKey uuid.UUID) bool {
	return PartitionHash(eventID) == PartitionHash(partitionKey)
}

// ValidateStreamID checks a stream id against SierraDB's rules: 1 to
// [MaxStreamIDLen] bytes and no NUL byte. The error is an
// [*InvalidStreamIDError].
func ValidateStreamID(streamID string) error {
	switch {
	case len(streamID) == 0 || len(streamID) > MaxStreamIDLen:
		return &InvalidStreamIDError{StreamID: streamID, Reason: "must be between 1 and 64 bytes long"}
	case containsNUL(streamID):
		return &InvalidStreamIDError{StreamID: streamID, Reason: "must not contain a NUL byte"}
	}
	return nil
}

func containsNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}
