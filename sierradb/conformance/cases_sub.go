package conformance

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// testSubscribeFromLatest runs first: SierraDB keeps a per-partition
// "next to broadcast" mark in memory that starts at 0 and only moves once a
// live subscriber has received a broadcast.
func testSubscribeFromLatest(t *testing.T, s *suite) {
	w := s.conn(t)
	c := s.conn(t)
	p := s.cfg.PartitionCount - 1
	key := s.keyIn(p)
	stream := name("latest")
	appendMany(t, w, key, stream, -1, 3)
	visible(t, w, stream, key, 2)
	subscribe(t, c, 1, "EPSUB", strconv.Itoa(int(p)), "FROM", "LATEST")
	appendMany(t, w, key, stream, 2, 1)
	var got []message
	for {
		m, ok := readMessage(t, c, quiet+600*time.Millisecond)
		if !ok {
			break
		}
		got = append(got, m)
	}
	var old, fresh int
	for _, m := range got {
		if m.stream == stream && m.version < 3 {
			old++
		} else if m.stream == stream && m.version == 3 {
			fresh++
		}
	}
	if fresh != 1 {
		t.Fatalf("the event stored after FROM LATEST arrived %d times (messages: %d)", fresh, len(got))
	}
	s.known(t, "FROM LATEST re-broadcast",
		"SierraDB starts each partition's broadcast mark at 0 on every server start, so the first write to a "+
			"partition with a live-only subscriber re-broadcasts that partition's history to it; the embedded "+
			"server delivers only events stored after the subscription. esmill's client never subscribes FROM "+
			"LATEST: it resolves the position with EPSEQ first",
		func(t *testing.T) {
			// This case runs first on a server that has had no live
			// subscriber: the three earlier events come again.
			if old == 0 || old > 3 {
				t.Fatalf("real server re-broadcast %d of the 3 older events to a FROM LATEST subscriber, want 1 to 3: "+
					"the known difference changed; update it and docs/sierradb-protocol.md", old)
			}
			t.Logf("real server re-broadcast %d older events of the partition to a FROM LATEST subscriber", old)
		},
		func(t *testing.T) {
			if old != 0 || len(got) != 1 {
				t.Fatalf("FROM LATEST delivered %d messages, %d of them older events", len(got), old)
			}
		})
}

func testSubscribePartition(t *testing.T, s *suite) {
	w := s.conn(t)
	c := s.conn(t)
	key := uuid.New()
	p := strconv.Itoa(int(s.partition(key)))
	stream := name("sp")
	res := appendMany(t, w, key, stream, -1, 5)
	first := get(t, res, "first_partition_sequence").Int
	visible(t, w, stream, key, 4)
	id := subscribe(t, c, 1, "EPSUB", p, "FROM", itoa(first+2))
	hist := messages(t, c, 3)
	checkCursors(t, hist, 0)
	checkStreamVersions(t, hist, stream, 2)
	for _, m := range hist {
		if m.sub != id {
			t.Fatalf("message for subscription %s on %s", m.sub, id)
		}
	}
	appendMany(t, w, key, stream, 4, 2)
	live := messages(t, c, 2)
	checkCursors(t, live, 3)
	checkStreamVersions(t, live, stream, 5)
	if live[0].seq != hist[2].seq+1 {
		t.Fatalf("live event sequence %d after history %d", live[0].seq, hist[2].seq)
	}
}

func testSubscribeAll(t *testing.T, s *suite) {
	w := s.conn(t)
	key1, key2 := uuid.New(), uuid.New()
	for s.partition(key2) == s.partition(key1) {
		key2 = uuid.New()
	}
	p1, p2 := s.partition(key1), s.partition(key2)
	a, b := name("all"), name("all")
	r1 := appendMany(t, w, key1, a, -1, 3)
	r2 := appendMany(t, w, key2, b, -1, 3)
	visible(t, w, a, key1, 2)
	visible(t, w, b, key2, 2)
	f1, f2 := get(t, r1, "first_partition_sequence").Int, get(t, r2, "first_partition_sequence").Int
	t.Run("star with FROM MAP", func(t *testing.T) {
		c := s.conn(t)
		// Every other partition starts far past its head: a live-only
		// partition would meet SierraDB's re-broadcast (see
		// SubscribeFromLatest).
		subscribe(t, c, 1, "EPSUB", "*", "FROM", "MAP", strconv.Itoa(int(p1))+"="+itoa(f1+1), strconv.Itoa(int(p2))+"="+itoa(f2), "DEFAULT", itoa(1<<60))
		got := messages(t, c, 5)
		checkCursors(t, got, 0)
		var ga, gb []message
		for _, m := range got {
			switch m.stream {
			case a:
				ga = append(ga, m)
			case b:
				gb = append(gb, m)
			default:
				t.Fatalf("unexpected stream %s", m.stream)
			}
		}
		checkStreamVersions(t, ga, a, 1)
		checkStreamVersions(t, gb, b, 0)
	})
	t.Run("list with one FROM", func(t *testing.T) {
		c := s.conn(t)
		list := strconv.Itoa(int(p1)) + "," + strconv.Itoa(int(p2))
		from := max(f1, f2)
		subscribe(t, c, 1, "EPSUB", list, "FROM", itoa(from))
		// The same start sequence applies to both partitions.
		n := max(0, f1+3-max(from, f1)) + max(0, f2+3-max(from, f2))
		checkCursors(t, messages(t, c, int(n)), 0)
	})
	t.Run("FROM MAP with DEFAULT", func(t *testing.T) {
		c := s.conn(t)
		list := strconv.Itoa(int(p1)) + "," + strconv.Itoa(int(p2))
		subscribe(t, c, 1, "EPSUB", list, "FROM", "MAP", strconv.Itoa(int(p1))+"="+itoa(f1+2), "DEFAULT", itoa(f2+1))
		got := messages(t, c, 3)
		var na, nb int
		for _, m := range got {
			if m.stream == a {
				na++
			} else if m.stream == b {
				nb++
			}
		}
		if na != 1 || nb != 2 {
			t.Fatalf("got %d events of a and %d of b, want 1 and 2", na, nb)
		}
	})
}

func testSubscriptionWindow(t *testing.T, s *suite) {
	w := s.conn(t)
	c := s.conn(t)
	key := uuid.New()
	p := strconv.Itoa(int(s.partition(key)))
	stream := name("win")
	res := appendMany(t, w, key, stream, -1, 10)
	first := get(t, res, "first_partition_sequence").Int
	visible(t, w, stream, key, 9)
	id := subscribe(t, c, 1, "EPSUB", p, "FROM", itoa(first), "WINDOW", "3")
	// Without an EACK, cursors 0..WINDOW-1.
	checkCursors(t, messages(t, c, 3), 0)
	// After EACK a, cursors up to a+WINDOW.
	expectSimple(t, c.do("EACK", id, "0"), "OK")
	checkCursors(t, messages(t, c, 1), 3)
	expectSimple(t, c.do("EACK", id, "3"), "OK")
	checkCursors(t, messages(t, c, 3), 4)
	expectSimple(t, c.do("EACK", id, "9"), "OK")
	checkCursors(t, messages(t, c, 3), 7)
}

func testAck(t *testing.T, s *suite) {
	w := s.conn(t)
	c := s.conn(t)
	key := uuid.New()
	p := strconv.Itoa(int(s.partition(key)))
	stream := name("ack")
	res := appendMany(t, w, key, stream, -1, 8)
	first := get(t, res, "first_partition_sequence").Int
	visible(t, w, stream, key, 7)
	id := subscribe(t, c, 1, "EPSUB", p, "FROM", itoa(first), "WINDOW", "2")
	checkCursors(t, messages(t, c, 2), 0)
	expectSimple(t, c.do("EACK", id, "1"), "OK")
	checkCursors(t, messages(t, c, 2), 2)
	// A lower value moves the window back: the last EACK wins.
	expectSimple(t, c.do("EACK", id, "0"), "OK")
	if m, ok := readMessage(t, c, quiet); ok {
		t.Fatalf("cursor %d arrived after the window moved back", m.cursor)
	}
	expectSimple(t, c.do("EACK", id, "3"), "OK")
	checkCursors(t, messages(t, c, 2), 4)
	// Another connection cannot acknowledge this subscription.
	expectErrorText(t, w.do("EACK", id, "5"), "NOTFOUND subscription not found")
	expectErrorText(t, c.do("EACK", uuid.NewString(), "1"), "NOTFOUND subscription not found")
	expectError(t, c.do("EACK", "not-a-uuid", "1"), "INVALIDARG")
	expectError(t, c.do("EACK", id, "-1"), "INVALIDARG")
}

func testSubscribeResume(t *testing.T, s *suite) {
	key := uuid.New()
	p := strconv.Itoa(int(s.partition(key)))
	stream := name("resume")
	w := s.conn(t)
	res := appendMany(t, w, key, stream, -1, 20)
	first := get(t, res, "first_partition_sequence").Int
	visible(t, w, stream, key, 19)

	// A writer races the switch from history to live.
	const total = 220
	var wg sync.WaitGroup
	wg.Add(1)
	// It reports through writerErr, calls nothing on t, and is joined
	// before the case returns, however it ends.
	wc := s.conn(t)
	writerErr := make(chan error, 1)
	defer func() {
		wc.close() // unblocks a writer still waiting for a reply
		wg.Wait()
	}()
	go func() {
		defer wg.Done()
		for v := int64(19); v < total-1; v += 10 {
			args := []string{"EMAPPEND", key.String()}
			for i := int64(0); i < 10 && v+i < total-1; i++ {
				args = append(args, stream, "Ev", "EXPECTED_VERSION", itoa(v+i))
			}
			if r, err := wc.roundTrip(args...); err != nil || r.Type != resp3.Map {
				writerErr <- fmt.Errorf("racing append: %s %v", r, err)
				return
			}
		}
		writerErr <- nil
	}()
	seen := map[int64]bool{}
	next := first
	read := func(c *conn, id string, upTo int64) {
		t.Helper()
		for next < first+upTo {
			m, ok := readMessage(t, c, frameTimeout)
			if !ok {
				t.Fatalf("stalled at sequence %d", next)
			}
			if m.stream != stream {
				continue
			}
			if seen[m.version] || m.seq != next {
				t.Fatalf("got sequence %d (version %d), want %d: gap or duplicate", m.seq, m.version, next)
			}
			seen[m.version] = true
			next++
			if m.cursor%10 == 9 {
				c.sendAck(id, m.cursor)
			}
		}
	}
	c := s.conn(t)
	id := subscribe(t, c, 1, "EPSUB", p, "FROM", itoa(first), "WINDOW", "25")
	read(c, id, 100)
	// Drop the connection and resume from the next sequence, as a client
	// that keeps its own position does.
	c.close()
	c = s.conn(t)
	id = subscribe(t, c, 1, "EPSUB", p, "FROM", "MAP", p+"="+itoa(next), "WINDOW", "25")
	read(c, id, total)
	if err := <-writerErr; err != nil {
		t.Fatal(err)
	}
	if len(seen) != total {
		t.Fatalf("saw %d versions, want %d", len(seen), total)
	}
}

func testSubscriptionConnection(t *testing.T, s *suite) {
	w := s.conn(t)
	c := s.conn(t)
	key1, key2 := uuid.New(), uuid.New()
	for s.partition(key1) == s.partition(key2) {
		key2 = uuid.New()
	}
	// Explicit positions, not FROM LATEST (see SubscribeFromLatest).
	from := func(key uuid.UUID) string {
		v := w.do("EPSEQ", key.String())
		if v.Type == resp3.Null {
			return "0"
		}
		return itoa(v.Int + 1)
	}
	id1 := subscribe(t, c, 1, "EPSUB", strconv.Itoa(int(s.partition(key1))), "FROM", from(key1))
	id2 := subscribe(t, c, 2, "EPSUB", strconv.Itoa(int(s.partition(key2))), "FROM", from(key2))
	if id1 == id2 {
		t.Fatal("two subscriptions share an id")
	}
	a, b := name("conn"), name("conn")
	// The subscribed connection still runs ordinary commands; replies and
	// pushes interleave but never nest (this case runs in TestRealServer
	// and TestEmbedded; tested: TestRealServer, TestEmbedded).
	r := c.do("EMAPPEND", key1.String(), a, "Ev", "EXPECTED_VERSION", "empty")
	expectInt(t, "append on the subscribed connection", get(t, get(t, r, "events").Elems[0], "stream_version"), 0)
	appendMany(t, w, key2, b, -1, 1)
	expectSimple(t, c.do("PING"), "PONG")
	got := map[string]string{}
	for range 2 {
		m, ok := readMessage(t, c, frameTimeout)
		if !ok {
			t.Fatalf("messages: %v", got)
		}
		got[m.sub] = m.stream
		if m.cursor != 0 {
			t.Fatalf("first message of a subscription has cursor %d", m.cursor)
		}
	}
	if got[id1] != a || got[id2] != b {
		t.Fatalf("routing: %v, want %s→%s, %s→%s", got, id1, a, id2, b)
	}
}

func testSubscribeStream(t *testing.T, s *suite) {
	w := s.conn(t)
	c := s.conn(t)
	key := uuid.New()
	stream, other := name("es"), name("es")
	appendMany(t, w, key, stream, -1, 2)
	visible(t, w, stream, key, 1)
	id := subscribe(t, c, 1, "ESUB", stream, "PARTITION_KEY", key.String())
	// Live events of the stream only; other streams in the partition are
	// not delivered.
	appendMany(t, w, key, other, -1, 2)
	appendMany(t, w, key, stream, 1, 2)
	got := liveMessages(t, s, c, 2)
	checkCursors(t, got, 0)
	checkStreamVersions(t, got, stream, 2)
	expectSimple(t, c.do("EACK", id, "1"), "OK")
	// Two streams in one ESUB, each with its own key.
	c2 := s.conn(t)
	plain := name("es")
	subscribe(t, c2, 1, "ESUB", stream, "PARTITION_KEY", key.String(), plain)
	appendOK(t, w, plain, "empty")
	appendMany(t, w, key, stream, 3, 1)
	got = messages(t, c2, 2)
	streams := map[string]bool{}
	for _, m := range got {
		streams[m.stream] = true
	}
	if !streams[plain] || !streams[stream] {
		t.Fatalf("multi-stream ESUB delivered %v", streams)
	}
}

func testSubscribeStreamFrom(t *testing.T, s *suite) {
	w := s.conn(t)
	stream := name("esf")
	key := streamKey(stream)
	appendMany(t, w, key, stream, -1, 3)
	visible(t, w, stream, key, 2)
	c := s.conn(t)
	subscribe(t, c, 1, "ESUB", stream, "FROM", "0", "WINDOW", "2")
	appendMany(t, w, key, stream, 2, 3)
	var got []message
	for {
		m, ok := readMessage(t, c, quiet)
		if !ok {
			break
		}
		got = append(got, m)
	}
	s.known(t, "ESUB FROM and WINDOW",
		"SierraDB 0.3.1's ESUB parser reads every following token as another stream id, so FROM, the version, "+
			"WINDOW and its number become streams: no history is replayed and the window stays 1000. The embedded "+
			"server implements the documented FROM and WINDOW. esmill's client follows a stream through a filtered "+
			"partition subscription (EPSUB), which behaves the same on both",
		func(t *testing.T) {
			if len(got) != 3 {
				t.Fatalf("got %d messages, want the 3 live ones and no history", len(got))
			}
			checkStreamVersions(t, got, stream, 3)
		},
		func(t *testing.T) {
			if len(got) != 2 {
				t.Fatalf("got %d messages, want a window of 2 from version 0", len(got))
			}
			checkStreamVersions(t, got, stream, 0)
		})
}

func testSubscribeErrors(t *testing.T, s *suite) {
	c := s.conn(t)
	for _, args := range [][]string{
		{"EPSUB", "0", "WINDOW", "0"},
		{"EPSUB", uuid.NewString()},
		{"EPSUB", "0-3"},
		{"EPSUB", "0", "FROM", "MAP", "nope"},
		{"EPSUB", "0", "FROM", "soon"},
		{"EPSUB"},
		{"ESUB"},
		{"ESUB", strings.Repeat("s", 65)},
	} {
		v := c.do(args...)
		expectError(t, v, "INVALIDARG")
	}
	expectErrorText(t, c.do("EPSUB", "0", "WINDOW", "0"), "INVALIDARG number 0 must not be less than 1")
	// The connection still works, with no subscription.
	expectSimple(t, c.do("PING"), "PONG")
	if len(c.pushes) != 0 {
		t.Fatalf("failed subscribes sent pushes: %v", c.pushes)
	}
	t.Run("partition out of range", func(t *testing.T) {
		// Accepted, and nothing is ever delivered: SierraDB only logs the
		// failure of the subscription task. The embedded server does the
		// same, so that code written against it meets the same silence.
		c := s.conn(t)
		subscribe(t, c, 1, "EPSUB", strconv.Itoa(int(s.cfg.PartitionCount)+3), "FROM", "0")
		if m, ok := readMessage(t, c, quiet); ok {
			t.Fatalf("delivered %v", m)
		}
	})
}
