package aggregate

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/codec"
)

func TestKeyOf(t *testing.T) {
	u := uuid.New()
	if keyOf(u.String()) != cmdKey(u) {
		t.Fatal("a canonical UUID is not its own bytes")
	}
	if keyOf("order-17/retry") == keyOf("order-17/retry2") || keyOf("A") == keyOf("a") {
		t.Fatal("distinct ids share a key")
	}
	upper := "ABCDEF01-2345-6789-ABCD-EF0123456789"
	if keyOf(upper) == keyOf("abcdef01-2345-6789-abcd-ef0123456789") {
		t.Fatal("an uppercase UUID string and its lowercase form are two ids, as strings")
	}
}

func TestCommandIDsByTime(t *testing.T) {
	p := newIDPolicy(time.Minute, 4)
	var c commandIDs
	const minute = int64(60_000)
	// 1,000 ids over 10 minutes, one every 600 ms.
	for i := range 1000 {
		at := int64(i) * 600
		c.add(keyOf(fmt.Sprint(i)), at, at, p)
	}
	now := int64(999 * 600)
	// Everything of the last minute is there; nothing older than a
	// minute and a granule is.
	for i := range 1000 {
		at := int64(i) * 600
		got := c.seen(keyOf(fmt.Sprint(i)))
		switch {
		case at >= now-minute && !got:
			t.Fatalf("id %d of %dms ago forgotten", i, now-at)
		case at < now-minute-p.granule && got:
			t.Fatalf("id %d of %dms ago kept", i, now-at)
		}
	}
	if n := c.len(); n > 110 {
		t.Fatalf("%d ids kept for a minute of 100", n)
	}
	// Long after, the newest `keep` stay.
	c.expire(now+10*minute, p)
	if c.len() != 4 || !c.seen(keyOf("999")) || !c.seen(keyOf("996")) || c.seen(keyOf("995")) {
		t.Fatalf("after the retention: %d ids", c.len())
	}
	// An id with an old logical time stays as long as its run.
	c.add(keyOf("old"), 5, now+10*minute, p)
	if !c.seen(keyOf("old")) {
		t.Fatal("an id of an old time was dropped at once")
	}
}

func TestCommandIDsEncode(t *testing.T) {
	p := newIDPolicy(time.Minute, 2)
	var c commandIDs
	for i := range 300 {
		c.add(keyOf(uuid.NewString()), int64(i*1000), int64(i*1000), p)
	}
	keys, marks := c.encode()
	var d commandIDs
	if !d.decode(nil, keys, marks) || d.len() != c.len() || len(d.marks) != len(c.marks) {
		t.Fatalf("round trip: %d ids, %d marks; want %d, %d", d.len(), len(d.marks), c.len(), len(c.marks))
	}
	for i := range c.keys {
		if d.keys[i] != c.keys[i] {
			t.Fatal("a key changed")
		}
	}
	for _, bad := range [][2][]byte{{keys[:15], marks}, {keys, marks[:8]}, {keys, nil}} {
		if d.decode(nil, bad[0], bad[1]) && len(bad[0]) > 0 {
			t.Fatalf("malformed input accepted: %d, %d bytes", len(bad[0]), len(bad[1]))
		}
	}
	// 300 ids of one busy entity take 8 bytes each, plus a mark per
	// granule of time.
	if size := len(keys) + len(marks); size > 300*8+20*16 {
		t.Fatalf("%d bytes for 300 ids", size)
	}
	// Snapshots written before prints hold 16-byte keys: they still load.
	p = newIDPolicy(time.Hour, 2)
	var old []byte
	ids := make([]cmdKey, 300)
	var e commandIDs
	for i := range ids {
		ids[i] = keyOf(uuid.NewString())
		old = append(old, ids[i][:]...)
		e.add(ids[i], int64(i*1000), int64(i*1000), p)
	}
	_, oldMarks := e.encode()
	var f commandIDs
	if !f.decode(old, nil, oldMarks) || f.len() != e.len() {
		t.Fatalf("16-byte keys: %d ids, want %d", f.len(), e.len())
	}
	if !f.seen(ids[299]) || f.seen(keyOf(uuid.NewString())) {
		t.Fatal("16-byte keys read wrongly")
	}
}

// TestIDPrintsSpread: the 8-byte prints of 200,000 random UUIDs, and of
// 200,000 UUIDv7 (whose first bytes are a clock), are all distinct, and
// every bit of a print is set about half of the time.
func TestIDPrintsSpread(t *testing.T) {
	n := 200_000
	if testing.Short() {
		n = 50_000
	}
	for _, gen := range []struct {
		name string
		id   func() uuid.UUID
	}{{"v4", uuid.New}, {"v7", func() uuid.UUID { return uuid.Must(uuid.NewV7()) }}} {
		seen := make(map[idPrint]bool, n)
		var ones [64]int
		for range n {
			p := cmdKey(gen.id()).print()
			if seen[p] {
				t.Fatalf("%s: two ids share a print among %d", gen.name, len(seen))
			}
			seen[p] = true
			for b := range 64 {
				ones[b] += int(p>>b) & 1
			}
		}
		for b, o := range ones {
			if f := float64(o) / float64(n); f < 0.49 || f > 0.51 {
				t.Fatalf("%s: bit %d set in %.3f of the prints", gen.name, b, f)
			}
		}
	}
}

func FuzzCommandIDsDecode(f *testing.F) {
	var c commandIDs
	p := newIDPolicy(time.Minute, 2)
	for i := range 20 {
		c.add(keyOf(fmt.Sprint(i)), int64(i*5000), int64(i*5000), p)
	}
	k, m := c.encode()
	f.Add(k, m)
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, keys, marks []byte) {
		var d commandIDs
		if !d.decode(nil, keys, marks) {
			if d.len() != 0 || len(d.marks) != 0 {
				t.Fatal("a refused input left ids behind")
			}
			return
		}
		// What decodes is usable: lookups, adds and expiry work on it.
		d.seen(cmdKey{})
		d.add(keyOf("x"), 1<<40, 1<<40, p)
		if !d.seen(keyOf("x")) {
			t.Fatal("an added id is not seen")
		}
		d.expire(1<<41, p)
		for i := 1; i < len(d.marks); i++ {
			if d.marks[i].start <= d.marks[i-1].start || d.marks[i].start >= d.len() {
				t.Fatalf("marks out of order: %+v", d.marks)
			}
		}
	})
}

// TestHistoryOnlyForLimits: command times are kept only for commands with
// a rate limit, and only as many as the limit's Max.
func TestHistoryOnlyForLimits(t *testing.T) {
	tr := newTracking(newIDPolicy(time.Minute, 2), map[string]int{"Limited": 3})
	for i := range 300 {
		for _, name := range []string{"Free", "Limited"} {
			tr.record(codec.Metadata{Command: name, CommandID: uuid.NewString()}, uuid.New(), int64(i), int64(i))
		}
	}
	if _, ok := tr.History["Free"]; ok {
		t.Fatal("times kept for a command without a limit")
	}
	if h := tr.History["Limited"]; len(h) != 3 || h[2] != 299 {
		t.Fatalf("times of the limited command = %v, want the newest 3", h)
	}
	if n := tr.countSince("Limited", time.UnixMilli(296)); n != 3 {
		t.Fatalf("countSince = %d, want 3", n)
	}
}
