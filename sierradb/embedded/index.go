package embedded

import (
	"hash/maphash"

	"github.com/google/uuid"
)

// The in-memory index of directory mode. Per stored event it holds the file
// offset of the event's record (8 bytes), the event's partition sequence in
// its stream's version list (4 bytes) and a slot of the event-id table (8
// bytes at a load of 3/8 to 3/4); payloads, metadata, names and ids stay on
// disk. Memory mode uses the same stream and id indexes next to its events.

// maxPartitionEvents bounds the events of one partition: sequences are
// held in 32 bits by the index.
const maxPartitionEvents = 1<<32 - 1

// chunkLen is the length of one chunk of a [chunkedU64].
const chunkLen = 4096

// chunkedU64 is an append-only list of uint64 kept in fixed chunks, so that
// growing it does not copy and leaves no garbage behind.
type chunkedU64 struct {
	chunks [][]uint64
	n      uint64
}

func (c *chunkedU64) append(v uint64) {
	if c.n%chunkLen == 0 {
		c.chunks = append(c.chunks, make([]uint64, 0, chunkLen))
	}
	last := &c.chunks[len(c.chunks)-1]
	*last = append(*last, v)
	c.n++
}

func (c *chunkedU64) at(i uint64) uint64 { return c.chunks[i/chunkLen][i%chunkLen] }

func (c *chunkedU64) len() uint64 { return c.n }

// stream is one stream: its partition key and the partition sequence of
// each version. key, id and pid are set once; seqs is guarded by the lock of
// partition pid.
type stream struct {
	id       string
	key      uuid.UUID
	pid      uint16
	seqs     []uint32
	firstOff uint64 // while loading: offset of the stream's first record
}

// latest returns the stream's latest version, or -1.
func (s *stream) latest() int64 { return int64(len(s.seqs)) - 1 }

// idTable maps event ids to partition sequences by a 32-bit hash of the id:
// an open-addressing multimap whose slots hold hash<<32 | sequence. Several
// ids may share a hash, so a lookup returns candidates that the caller
// checks against the stored events.
type idTable struct {
	slots []uint64 // 0: empty
	n     int
}

// idHash hashes an event id for an idTable; 0 is mapped to 1, since 0
// marks an empty slot.
func idHash(seed maphash.Seed, id uuid.UUID) uint32 {
	h := uint32(maphash.Comparable(seed, id) >> 32)
	if h == 0 {
		h = 1
	}
	return h
}

func (t *idTable) insert(h uint32, seq uint32) {
	if (t.n+1)*4 > len(t.slots)*3 {
		t.grow()
	}
	t.place(uint64(h)<<32 | uint64(seq))
	t.n++
}

func (t *idTable) place(slot uint64) {
	mask := uint64(len(t.slots) - 1)
	for i := (slot >> 32) & mask; ; i = (i + 1) & mask {
		if t.slots[i] == 0 {
			t.slots[i] = slot
			return
		}
	}
}

func (t *idTable) grow() {
	old := t.slots
	t.slots = make([]uint64, max(64, 2*len(old)))
	for _, s := range old {
		if s != 0 {
			t.place(s)
		}
	}
}

// candidates appends to out the sequences stored under hash h.
func (t *idTable) candidates(h uint32, out []uint32) []uint32 {
	if len(t.slots) == 0 {
		return out
	}
	mask := uint64(len(t.slots) - 1)
	for i := uint64(h) & mask; t.slots[i] != 0; i = (i + 1) & mask {
		if uint32(t.slots[i]>>32) == h {
			out = append(out, uint32(t.slots[i]))
		}
	}
	return out
}
