package embedded

// Partition log format (version 2)
//
// A partition log starts with a 32-byte file header, all integers
// big-endian:
//
//	[8]byte "SDBEMLOG" | uint16 format (2) | uint16 partition id | uint32 zero
//	uint64 salt (random, chosen when the file is created)
//	uint32 CRC-32C of the 24 bytes before | uint32 zero
//
// Records follow, one per transaction (EAPPEND or EMAPPEND), each a 28-byte
// header and a body:
//
//	uint32 record magic "SDRE" | uint32 body length | uint32 CRC-32C of the body
//	uint32 event count | uint64 first partition sequence
//	uint32 header CRC: CRC-32C of salt | uint64 file offset of the record | the 24 bytes before
//
// The body:
//
//	[16]byte transaction id | [16]byte partition key
//	per event: [16]byte event id | uint64 stream version | uint64 timestamp (ns)
//	           uint8 len + stream id | uint8 len + event name
//	           uint32 len + metadata | uint32 len + payload
//
// The header checksum binds a record to its file (salt) and its place in it
// (offset), so bytes shaped like a record inside a payload, or copied from
// another log, never pass for one; recovery never searches for records
// anyway (tested: TestFaultRecordImageTornWrite). A record is written with one write and fsynced before the append
// is acknowledged.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/google/uuid"
)

const (
	logMagic         = "SDBEMLOG"
	logFormat        = 2
	fileHeaderSize   = 32
	recordMagic      = 0x53445245 // "SDRE"
	recordHeaderSize = 28
	txHeaderSize     = 16 + 16
	eventFixedSize   = 16 + 8 + 8 + 1 + 1 + 4 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// fileHeader encodes the header of a new partition log.
func fileHeader(pid uint16, salt uint64) []byte {
	h := make([]byte, fileHeaderSize)
	copy(h, logMagic)
	binary.BigEndian.PutUint16(h[8:], logFormat)
	binary.BigEndian.PutUint16(h[10:], pid)
	binary.BigEndian.PutUint64(h[16:], salt)
	binary.BigEndian.PutUint32(h[24:], crc32.Checksum(h[:24], castagnoli))
	return h
}

// parseFileHeader checks a file header and returns its salt. The error
// says what is wrong.
func parseFileHeader(h []byte, pid uint16) (uint64, error) {
	if crc32.Checksum(h[:24], castagnoli) != binary.BigEndian.Uint32(h[24:]) ||
		binary.BigEndian.Uint32(h[12:]) != 0 || binary.BigEndian.Uint32(h[28:]) != 0 {
		if string(h[:8]) == logMagic && binary.BigEndian.Uint16(h[8:]) != logFormat {
			return 0, fmt.Errorf("log format version %d; this server reads version %d", binary.BigEndian.Uint16(h[8:]), logFormat)
		}
		return 0, errors.New("file header checksum mismatch")
	}
	if string(h[:8]) != logMagic {
		return 0, errors.New("not a partition log (bad magic)")
	}
	if v := binary.BigEndian.Uint16(h[8:]); v != logFormat {
		return 0, fmt.Errorf("log format version %d; this server reads version %d", v, logFormat)
	}
	if p := binary.BigEndian.Uint16(h[10:]); p != pid {
		return 0, fmt.Errorf("log of partition %d in the file of partition %d", p, pid)
	}
	return binary.BigEndian.Uint64(h[16:]), nil
}

// recordHeader is the decoded header of a record.
type recordHeader struct {
	bodyLen  uint32
	bodyCRC  uint32
	count    uint32
	firstSeq uint64
}

func (h recordHeader) size() uint64 { return recordHeaderSize + uint64(h.bodyLen) }

func headerCRC(salt, off uint64, b []byte) uint32 {
	var pre [16]byte
	binary.BigEndian.PutUint64(pre[0:], salt)
	binary.BigEndian.PutUint64(pre[8:], off)
	return crc32.Update(crc32.Checksum(pre[:], castagnoli), castagnoli, b[:24])
}

// encodeRecordHeader writes the header of a record at file offset off.
func encodeRecordHeader(b []byte, salt, off uint64, h recordHeader) {
	binary.BigEndian.PutUint32(b[0:], recordMagic)
	binary.BigEndian.PutUint32(b[4:], h.bodyLen)
	binary.BigEndian.PutUint32(b[8:], h.bodyCRC)
	binary.BigEndian.PutUint32(b[12:], h.count)
	binary.BigEndian.PutUint64(b[16:], h.firstSeq)
	binary.BigEndian.PutUint32(b[24:], headerCRC(salt, off, b))
}

// parseRecordHeader checks the header of the record at file offset off.
func parseRecordHeader(b []byte, salt, off uint64) (recordHeader, bool) {
	if binary.BigEndian.Uint32(b[24:]) != headerCRC(salt, off, b) || binary.BigEndian.Uint32(b[0:]) != recordMagic {
		return recordHeader{}, false
	}
	return recordHeader{
		bodyLen:  binary.BigEndian.Uint32(b[4:]),
		bodyCRC:  binary.BigEndian.Uint32(b[8:]),
		count:    binary.BigEndian.Uint32(b[12:]),
		firstSeq: binary.BigEndian.Uint64(b[16:]),
	}, true
}

// bodyOK reports whether a record body matches its header's checksum.
func (h recordHeader) bodyOK(body []byte) bool {
	return uint32(len(body)) == h.bodyLen && crc32.Checksum(body, castagnoli) == h.bodyCRC
}

// encodeBody encodes the body of a transaction.
func encodeBody(evs []*event) []byte {
	n := txHeaderSize
	for _, e := range evs {
		n += eventFixedSize + len(e.streamID) + len(e.name) + len(e.metadata) + len(e.payload)
	}
	b := make([]byte, 0, n)
	b = append(b, evs[0].txID[:]...)
	b = append(b, evs[0].key[:]...)
	for _, e := range evs {
		b = append(b, e.id[:]...)
		b = binary.BigEndian.AppendUint64(b, e.version)
		b = binary.BigEndian.AppendUint64(b, uint64(e.tsNanos))
		b = append(b, byte(len(e.streamID)))
		b = append(b, e.streamID...)
		b = append(b, byte(len(e.name)))
		b = append(b, e.name...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(e.metadata)))
		b = append(b, e.metadata...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(e.payload)))
		b = append(b, e.payload...)
	}
	return b
}

// eventHead is what the index needs of a stored event: no payload, no
// metadata. streamID aliases the body.
type eventHead struct {
	id       uuid.UUID
	version  uint64
	tsNanos  int64
	streamID []byte
	name     []byte
	metadata []byte
	payload  []byte
}

var errBodyShort = errors.New("event truncated")

// walkBody parses a record body and calls fn for each event in order. Its
// slices alias body. It checks the shape only; the caller checks meaning.
func walkBody(body []byte, count uint32, fn func(i int, key uuid.UUID, e *eventHead) error) (txID uuid.UUID, err error) {
	if len(body) < txHeaderSize {
		return uuid.Nil, errors.New("transaction header truncated")
	}
	if count == 0 || uint64(count)*eventFixedSize > uint64(len(body)-txHeaderSize) {
		return uuid.Nil, fmt.Errorf("invalid event count %d", count)
	}
	var key uuid.UUID
	copy(txID[:], body[0:16])
	copy(key[:], body[16:32])
	rest := body[txHeaderSize:]
	take := func(k int) ([]byte, error) {
		if len(rest) < k {
			return nil, errBodyShort
		}
		b := rest[:k:k]
		rest = rest[k:]
		return b, nil
	}
	var e eventHead
	for i := range int(count) {
		fixed, err := take(32)
		if err != nil {
			return uuid.Nil, err
		}
		copy(e.id[:], fixed[0:16])
		e.version = binary.BigEndian.Uint64(fixed[16:24])
		ts := binary.BigEndian.Uint64(fixed[24:32])
		if ts >= 1<<63 {
			return uuid.Nil, errors.New("timestamp out of range")
		}
		e.tsNanos = int64(ts)
		for _, dst := range []*[]byte{&e.streamID, &e.name} {
			l, err := take(1)
			if err != nil {
				return uuid.Nil, err
			}
			if *dst, err = take(int(l[0])); err != nil {
				return uuid.Nil, err
			}
		}
		for _, dst := range []*[]byte{&e.metadata, &e.payload} {
			l, err := take(4)
			if err != nil {
				return uuid.Nil, err
			}
			if *dst, err = take(int(binary.BigEndian.Uint32(l))); err != nil {
				return uuid.Nil, err
			}
		}
		if err := fn(i, key, &e); err != nil {
			return uuid.Nil, err
		}
	}
	if len(rest) != 0 {
		return uuid.Nil, fmt.Errorf("%d bytes after the last event", len(rest))
	}
	return txID, nil
}

// decodeEvents decodes the events with indexes [lo, hi) of a verified
// record. Metadata and payloads alias body, which must not be modified.
func decodeEvents(body []byte, h recordHeader, pid uint16, lo, hi int, out []*event) ([]*event, error) {
	var picked []*event
	txID, err := walkBody(body, h.count, func(i int, k uuid.UUID, e *eventHead) error {
		if i < lo || i >= hi {
			return nil
		}
		picked = append(picked, &event{
			id: e.id, key: k, pid: pid, seq: h.firstSeq + uint64(i), version: e.version, tsNanos: e.tsNanos,
			streamID: string(e.streamID), name: string(e.name), metadata: e.metadata, payload: e.payload,
		})
		return nil
	})
	if err != nil {
		return out, err
	}
	for _, e := range picked {
		e.txID = txID
	}
	return append(out, picked...), nil
}

func crc32Body(body []byte) uint32 { return crc32.Checksum(body, castagnoli) }
