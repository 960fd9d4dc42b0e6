package aggregate

import (
	"crypto/sha256"
	"encoding/binary"
	"time"

	"github.com/google/uuid"
)

// cmdKey is a command id in 16 bytes: a UUID in its canonical form is
// its own 16 bytes, any other string the first 16 bytes of its SHA-256.
// Two different ids share a key with a probability of about 2^-128 per
// pair, as two random UUIDs do.
type cmdKey [16]byte

func keyOf(id string) cmdKey {
	if canonicalUUID(id) {
		if u, err := uuid.Parse(id); err == nil {
			return cmdKey(u)
		}
	}
	h := sha256.Sum256([]byte(id))
	var k cmdKey
	copy(k[:], h[:16])
	return k
}

// idPrint is what an entity keeps of a command id: 8 bytes folded from
// its 16-byte key. Two different ids share a print with a probability of
// about 2^-64 per pair; an entity that keeps n ids thus takes a new
// command for one of them with a probability of about n·2^-64 (3·10^-17
// for a busy entity's 300 ids), for half the memory of the keys (tested:
// TestIDPrintsSpread).
type idPrint uint64

func (k cmdKey) print() idPrint {
	// The halves folded, then MurmurHash3's finalizer (a bijection that
	// spreads every input bit over the output), so that ids whose
	// first bytes are a clock (UUIDv7) spread as random ones do.
	x := binary.LittleEndian.Uint64(k[:8]) ^ binary.LittleEndian.Uint64(k[8:])
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return idPrint(x)
}

// canonicalUUID reports whether s is a UUID in lowercase hyphenated form,
// the only form whose bytes are used as they are (so that "ABC..." and
// "abc..." stay two ids, as the strings are).
func canonicalUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

// commandIDs remembers the command ids an entity has handled, by time:
// an id stays for at least the retention after its command's time, and
// the newest `keep` ids stay whatever their age. Ids are kept as 8-byte
// prints (see idPrint) in arrival order, in runs: a run holds the ids that
// arrived while their times stayed within one granule (a sixteenth of the
// retention) of the run's start, and its mark records where it starts and
// the latest time in it. Expiry drops whole runs from the front, so there
// is no time per id. A lookup scans from the newest id back.
type commandIDs struct {
	keys  []idPrint
	marks []idMark
}

// idMark starts a run: keys from index start on, up to the next mark,
// have times of at (ms) or earlier; from is the time that opened the run.
// Marks' times only grow.
type idMark struct {
	at, from int64
	start    int
}

// idPolicy is the executor's command-id configuration.
type idPolicy struct {
	retention int64 // ms
	granule   int64 // ms
	keep      int
}

func newIDPolicy(retention time.Duration, keep int) idPolicy {
	r := retention.Milliseconds()
	return idPolicy{retention: r, granule: max(r/16, 1), keep: keep}
}

func (c *commandIDs) seen(k cmdKey) bool {
	p := k.print()
	for i := len(c.keys) - 1; i >= 0; i-- {
		if c.keys[i] == p {
			return true
		}
	}
	return false
}

// add records a key of the given time (ms) and drops what has expired by
// now (ms). An id whose time is older than the current run's (a command
// sent with an older logical time) joins the run, and so stays at least
// as long as it should.
func (c *commandIDs) add(k cmdKey, at, now int64, p idPolicy) {
	switch n := len(c.marks); {
	case n == 0 || at >= c.marks[n-1].from+p.granule:
		c.marks = append(c.marks, idMark{at: at, from: at, start: len(c.keys)})
	case at > c.marks[n-1].at:
		c.marks[n-1].at = at
	}
	if len(c.keys) == cap(c.keys) {
		// Grow by a quarter, not append's doubling: a busy entity's
		// ids are most of its memory.
		grown := make([]idPrint, len(c.keys), len(c.keys)+len(c.keys)/4+8)
		copy(grown, c.keys)
		c.keys = grown
	}
	c.keys = append(c.keys, k.print())
	c.expire(now, p)
}

// expire drops the runs whose latest time is older than the retention,
// keeping at least p.keep ids.
func (c *commandIDs) expire(now int64, p idPolicy) {
	cut := now - p.retention
	runs := 0
	for runs < len(c.marks) && c.marks[runs].at < cut {
		runs++
	}
	if runs == 0 {
		return
	}
	n := len(c.keys)
	if runs < len(c.marks) {
		n = c.marks[runs].start
	}
	n = min(n, max(len(c.keys)-p.keep, 0))
	if n <= 0 {
		return
	}
	c.keys = c.keys[n:]
	marks := c.marks[:0]
	for j, m := range c.marks {
		end := len(c.keys) + n
		if j+1 < len(c.marks) {
			end = c.marks[j+1].start
		}
		if end <= n {
			continue
		}
		m.start = max(m.start-n, 0)
		marks = append(marks, m)
	}
	c.marks = marks
	c.compact()
}

// compact gives memory back once the slices use less than half of what
// they hold.
func (c *commandIDs) compact() {
	if cap(c.keys) > 64 && len(c.keys) < cap(c.keys)/2 {
		c.keys = append(make([]idPrint, 0, len(c.keys)+len(c.keys)/4), c.keys...)
	}
	if cap(c.marks) > 8 && len(c.marks) < cap(c.marks)/2 {
		c.marks = append([]idMark(nil), c.marks...)
	}
}

func (c *commandIDs) len() int { return len(c.keys) }

// encode packs the memory for a snapshot: prints back to back, 8 bytes
// each, then per mark its time and start as two 8-byte integers.
func (c *commandIDs) encode() (prints, marks []byte) {
	prints = make([]byte, 0, 8*len(c.keys))
	for _, k := range c.keys {
		prints = binary.BigEndian.AppendUint64(prints, uint64(k))
	}
	marks = make([]byte, 0, 16*len(c.marks))
	for _, m := range c.marks {
		marks = binary.BigEndian.AppendUint64(marks, uint64(m.at))
		marks = binary.BigEndian.AppendUint64(marks, uint64(m.start))
	}
	return prints, marks
}

// decode reads what encode wrote (prints), or the 16-byte keys of
// snapshots written before prints (keys; prints empty); malformed input
// gives an empty memory and false.
func (c *commandIDs) decode(keys, prints, marks []byte) bool {
	switch {
	case len(prints) > 0:
		if len(prints)%8 != 0 {
			return false
		}
		c.keys = make([]idPrint, len(prints)/8)
		for i := range c.keys {
			c.keys[i] = idPrint(binary.BigEndian.Uint64(prints[8*i:]))
		}
	default:
		if len(keys)%16 != 0 {
			return false
		}
		c.keys = make([]idPrint, len(keys)/16)
		for i := range c.keys {
			c.keys[i] = cmdKey(keys[16*i : 16*i+16]).print()
		}
	}
	if len(marks)%16 != 0 {
		c.keys = nil
		return false
	}
	c.marks = make([]idMark, len(marks)/16)
	for i := range c.marks {
		at := int64(binary.BigEndian.Uint64(marks[16*i:]))
		m := idMark{at: at, from: at, start: int(binary.BigEndian.Uint64(marks[16*i+8:]))}
		ok := m.start >= 0 && m.start < len(c.keys)
		if i == 0 {
			ok = ok && m.start == 0
		} else {
			ok = ok && m.start > c.marks[i-1].start && m.at >= c.marks[i-1].at
		}
		if !ok {
			c.keys, c.marks = nil, nil
			return false
		}
		c.marks[i] = m
	}
	if len(c.keys) > 0 && len(c.marks) == 0 {
		c.keys = nil
		return false
	}
	return true
}
