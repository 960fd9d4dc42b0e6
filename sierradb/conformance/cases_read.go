package conformance

import (
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

var eventFields = []field{
	{"event_id", resp3.SimpleString}, {"partition_key", resp3.SimpleString},
	{"partition_id", resp3.Integer}, {"transaction_id", resp3.SimpleString},
	{"partition_sequence", resp3.Integer}, {"stream_version", resp3.Integer},
	{"timestamp", resp3.Integer}, {"stream_id", resp3.BlobString},
	{"event_name", resp3.BlobString}, {"metadata", resp3.BlobString},
	{"payload", resp3.BlobString},
}

func testGet(t *testing.T, s *suite) {
	c := s.conn(t)
	stream := name("get")
	v := c.do("EAPPEND", stream, "Got", "EXPECTED_VERSION", "empty", "PAYLOAD", "pay", "TIMESTAMP", "1700000000999")
	id := str(get(t, v, "event_id"))
	e := eget(t, c, id)
	expectMap(t, "EGET", e, resp3.SimpleString, eventFields)
	if str(get(t, e, "event_id")) != id || str(get(t, e, "stream_id")) != stream || str(get(t, e, "event_name")) != "Got" ||
		str(get(t, e, "payload")) != "pay" || str(get(t, e, "metadata")) != "" {
		t.Fatalf("EGET: %s", e)
	}
	expectInt(t, "timestamp", get(t, e, "timestamp"), 1700000000999)
	expectInt(t, "partition_sequence", get(t, e, "partition_sequence"), get(t, v, "partition_sequence").Int)
	expectInt(t, "partition_id", get(t, e, "partition_id"), get(t, v, "partition_id").Int)
	// An unknown id in the same partition, and one in another.
	key := streamKey(stream)
	expectNull(t, "EGET unknown", c.do("EGET", sierradb.NewEventID(key).String()))
	expectNull(t, "EGET unknown", c.do("EGET", uuid.NewString()))
}

func testScan(t *testing.T, s *suite) {
	c := s.conn(t)
	stream := name("scan")
	key := streamKey(stream)
	appendMany(t, c, key, stream, -1, 10)
	visible(t, c, stream, key, 9)
	check := func(t *testing.T, v resp3.Value, first, n int64, hasMore bool) {
		t.Helper()
		expectMap(t, "ESCAN", v, resp3.SimpleString, []field{{"has_more", resp3.Boolean}, {"events", resp3.Array}})
		evs := get(t, v, "events")
		if int64(evs.Len()) != n {
			t.Fatalf("%d events, want %d: %s", evs.Len(), n, v)
		}
		for i, e := range evs.Elems {
			expectMap(t, "ESCAN event", e, resp3.SimpleString, eventFields)
			expectInt(t, "stream_version", get(t, e, "stream_version"), first+int64(i))
			if str(get(t, e, "payload")) != strconv.FormatInt(first+int64(i), 10) {
				t.Fatalf("payload of version %d: %s", first+int64(i), get(t, e, "payload"))
			}
		}
		if get(t, v, "has_more").Bool != hasMore {
			t.Fatalf("has_more = %v, want %v", get(t, v, "has_more").Bool, hasMore)
		}
	}
	t.Run("whole stream", func(t *testing.T) { check(t, c.do("ESCAN", stream, "-", "+"), 0, 10, false) })
	t.Run("inclusive bounds", func(t *testing.T) { check(t, c.do("ESCAN", stream, "2", "5"), 2, 4, true) })
	t.Run("single version", func(t *testing.T) { check(t, c.do("ESCAN", stream, "9", "9"), 9, 1, false) })
	t.Run("past the end", func(t *testing.T) { check(t, c.do("ESCAN", stream, "10", "+"), 10, 0, false) })
	t.Run("count", func(t *testing.T) { check(t, c.do("ESCAN", stream, "0", "+", "COUNT", "3"), 0, 3, true) })
	t.Run("count and range", func(t *testing.T) { check(t, c.do("ESCAN", stream, "4", "8", "COUNT", "2"), 4, 2, true) })
	t.Run("partition key", func(t *testing.T) {
		check(t, c.do("ESCAN", stream, "-", "+", "PARTITION_KEY", key.String()), 0, 10, false)
		check(t, c.do("ESCAN", stream, "-", "+", "PARTITION_KEY", s.keyInOtherBucket(key).String()), 0, 0, false)
		v := c.do("ESCAN", stream, "-", "+", "PARTITION_KEY", s.keyInSameBucket(key).String())
		s.known(t, "reads under another key in the same bucket", readScopeReason,
			func(t *testing.T) { check(t, v, 0, int64(get(t, v, "events").Len()), false) },
			func(t *testing.T) { check(t, v, 0, 0, false) })
	})
	t.Run("unknown stream", func(t *testing.T) { check(t, c.do("ESCAN", name("none"), "-", "+"), 0, 0, false) })
	t.Run("range errors", func(t *testing.T) {
		expectErrorText(t, c.do("ESCAN", stream, "+", "+"), "INVALIDARG start version cannot be '+'")
		expectErrorText(t, c.do("ESCAN", stream, "0", "-"), "INVALIDARG end version cannot be '-'")
		expectError(t, c.do("ESCAN", stream, "0", "+", "COUNT", "2", "COUNT", "3"), "INVALIDARG")
	})
	t.Run("default count is 100", func(t *testing.T) {
		long := name("long")
		lk := streamKey(long)
		appendMany(t, c, lk, long, -1, 105)
		visible(t, c, long, lk, 104)
		v := c.do("ESCAN", long, "-", "+")
		if evs := get(t, v, "events"); evs.Len() != 100 || !get(t, v, "has_more").Bool {
			t.Fatalf("default page: %d events, has_more %v", evs.Len(), get(t, v, "has_more").Bool)
		}
	})
}

func testScanHasMore(t *testing.T, s *suite) {
	c := s.conn(t)
	stream := name("hm")
	key := streamKey(stream)
	appendMany(t, c, key, stream, -1, 3)
	visible(t, c, stream, key, 2)
	// A page that ends exactly at the last event.
	v := c.do("ESCAN", stream, "0", "+", "COUNT", "3")
	if n := get(t, v, "events").Len(); n != 3 {
		t.Fatalf("%d events", n)
	}
	hasMore := get(t, v, "has_more").Bool
	s.known(t, "ESCAN has_more at exactly COUNT",
		"SierraDB sets has_more whenever a page is full, even when no further event exists; the embedded server "+
			"looks one event ahead. A client that pages until a page comes back empty or has_more is false works with both",
		func(t *testing.T) {
			if !hasMore {
				t.Fatal("has_more false on a full last page")
			}
		},
		func(t *testing.T) {
			if hasMore {
				t.Fatal("has_more true with no further event")
			}
		})
	// The next page is empty and says so.
	v = c.do("ESCAN", stream, "3", "+", "COUNT", "3")
	if get(t, v, "events").Len() != 0 || get(t, v, "has_more").Bool {
		t.Fatalf("page past the end: %s", v)
	}
}

func testStreamVersion(t *testing.T, s *suite) {
	c := s.conn(t)
	stream := name("ver")
	expectNull(t, "ESVER of an unknown stream", c.do("ESVER", stream))
	appendOK(t, c, stream, "empty")
	appendOK(t, c, stream, "0")
	visible(t, c, stream, streamKey(stream), 1)
	expectInt(t, "ESVER", c.do("ESVER", stream), 1)
	expectInt(t, "ESVER with key", c.do("ESVER", stream, "PARTITION_KEY", streamKey(stream).String()), 1)
	expectNull(t, "ESVER with a key in another bucket", c.do("ESVER", stream, "PARTITION_KEY", s.keyInOtherBucket(streamKey(stream)).String()))
	v := c.do("ESVER", stream, "PARTITION_KEY", s.keyInSameBucket(streamKey(stream)).String())
	s.known(t, "reads under another key in the same bucket", readScopeReason,
		func(t *testing.T) {
			if v.Type != resp3.Null && (v.Type != resp3.Integer || v.Int > 1) {
				t.Fatalf("ESVER with a key in the same bucket: %s", v)
			}
		},
		func(t *testing.T) { expectNull(t, "ESVER with a key in the same bucket", v) })
}

const readScopeReason = "SierraDB indexes streams per storage bucket (partition mod bucket count), and a read under " +
	"a foreign key of the same bucket returns an inconsistent result (nothing, or a prefix of the stream); the " +
	"embedded server reads only under the stream's own key and returns nothing. Read with the key the stream was " +
	"written with"

func testPartitionScan(t *testing.T, s *suite) {
	c := s.conn(t)
	key := uuid.New()
	p := s.partition(key)
	ps := strconv.Itoa(int(p))
	stream := name("ps")
	res := appendMany(t, c, key, stream, -1, 6)
	first := get(t, res, "first_partition_sequence").Int
	visible(t, c, stream, key, 5)
	check := func(t *testing.T, v resp3.Value, from, n int64, hasMore bool) {
		t.Helper()
		expectMap(t, "EPSCAN", v, resp3.SimpleString, []field{{"has_more", resp3.Boolean}, {"events", resp3.Array}})
		evs := get(t, v, "events")
		if int64(evs.Len()) != n {
			t.Fatalf("%d events, want %d: %s", evs.Len(), n, v)
		}
		for i, e := range evs.Elems {
			expectMap(t, "EPSCAN event", e, resp3.SimpleString, eventFields)
			expectInt(t, "partition_sequence", get(t, e, "partition_sequence"), from+int64(i))
			expectInt(t, "partition_id", get(t, e, "partition_id"), int64(p))
		}
		if get(t, v, "has_more").Bool != hasMore {
			t.Fatalf("has_more = %v, want %v", get(t, v, "has_more").Bool, hasMore)
		}
	}
	// Our events are the last ones of the partition unless another writer
	// shares it; use a fresh key's partition head as the reference.
	head := c.do("EPSEQ", ps).Int
	t.Run("open end", func(t *testing.T) {
		check(t, c.do("EPSCAN", ps, itoa(first), "+"), first, head-first+1, false)
	})
	t.Run("by key", func(t *testing.T) {
		check(t, c.do("EPSCAN", key.String(), itoa(first), "+"), first, head-first+1, false)
	})
	t.Run("count", func(t *testing.T) {
		check(t, c.do("EPSCAN", ps, itoa(first), "+", "COUNT", "2"), first, 2, true)
	})
	t.Run("end past the head", func(t *testing.T) {
		check(t, c.do("EPSCAN", ps, itoa(first), itoa(head+10)), first, head-first+1, false)
	})
	t.Run("from past the head", func(t *testing.T) {
		check(t, c.do("EPSCAN", ps, itoa(head+1), "+"), head+1, 0, false)
	})
	t.Run("range errors", func(t *testing.T) {
		expectErrorText(t, c.do("EPSCAN", ps, "+", "+"), "INVALIDARG start sequence cannot be '+'")
		expectErrorText(t, c.do("EPSCAN", ps, "0", "-"), "INVALIDARG end sequence cannot be '-'")
		expectError(t, c.do("EPSCAN", "x-y", "0", "+"), "INVALIDARG")
	})
	t.Run("partition out of range", func(t *testing.T) {
		expectErrorText(t, c.do("EPSCAN", strconv.Itoa(int(s.cfg.PartitionCount)), "0", "+"), "CLUSTERDOWN partition unavailable")
		expectError(t, c.do("EPSCAN", "70000", "0", "+"), "INVALIDARG")
	})
}

func testPartitionScanEndBound(t *testing.T, s *suite) {
	c := s.conn(t)
	key := uuid.New()
	ps := strconv.Itoa(int(s.partition(key)))
	// Four one-event transactions, then one four-event transaction.
	single := name("pe")
	first := get(t, appendOK(t, c, single, "empty", "PARTITION_KEY", key.String()), "partition_sequence").Int
	for v := range int64(3) {
		appendOK(t, c, single, itoa(v), "PARTITION_KEY", key.String())
	}
	multi := name("pe")
	appendMany(t, c, key, multi, -1, 4)
	visible(t, c, multi, key, 3)
	count := func(from, to int64) int {
		return get(t, c.do("EPSCAN", ps, itoa(from), itoa(to)), "events").Len()
	}
	same, oneTx, twoTx := count(first, first), count(first, first+2), count(first+4, first+6)
	s.known(t, "EPSCAN end bound",
		"SierraDB 0.3.1 reads end-start transactions from start and then drops events past end: EPSCAN p n n "+
			"returns nothing, a range over one-event transactions is end-exclusive, and a range inside one "+
			"multi-event transaction is inclusive. The embedded server keeps the documented inclusive range. "+
			"Clients should scan to + and stop on the sequence, which behaves the same on both",
		func(t *testing.T) {
			if same != 0 || oneTx != 2 || twoTx != 3 {
				t.Fatalf("EPSCAN n..n, over single-event and multi-event transactions: %d, %d, %d events, want 0, 2, 3", same, oneTx, twoTx)
			}
		},
		func(t *testing.T) {
			if same != 1 || oneTx != 3 || twoTx != 3 {
				t.Fatalf("EPSCAN n..n, over single-event and multi-event transactions: %d, %d, %d events, want 1, 3, 3", same, oneTx, twoTx)
			}
		})
}

func testPartitionSequence(t *testing.T, s *suite) {
	c := s.conn(t)
	key := uuid.New()
	p := s.partition(key)
	stream := name("seq")
	res := appendMany(t, c, key, stream, -1, 2)
	visible(t, c, stream, key, 1)
	last := get(t, res, "last_partition_sequence").Int
	if v := c.do("EPSEQ", strconv.Itoa(int(p))); v.Type != resp3.Integer || v.Int < last {
		t.Fatalf("EPSEQ %d = %s, want >= %d", p, v, last)
	}
	if v := c.do("EPSEQ", key.String()); v.Type != resp3.Integer || v.Int < last {
		t.Fatalf("EPSEQ by key = %s", v)
	}
	expectErrorText(t, c.do("EPSEQ", strconv.Itoa(int(s.cfg.PartitionCount))), "CLUSTERDOWN partition unavailable")
	expectError(t, c.do("EPSEQ", "nope"), "INVALIDARG")
}

// testVisibility pins when an append becomes readable: the embedded server
// serves it before replying (no miss in 30 rounds); SierraDB confirms it
// asynchronously, so a read right after the reply may miss it (the real
// server must show a miss within 500 rounds, else the fact changed and the
// docs with it), but it becomes visible soon after.
func testVisibility(t *testing.T, s *suite) {
	c := s.conn(t)
	misses := 0
	rounds := 30
	if s.cfg.Server == Real {
		rounds = 500 // stops at the first miss; about one read in ten misses
	}
	done := 0
	for done < rounds && (s.cfg.Server != Real || misses == 0) {
		done++
		stream := name("vis")
		key := streamKey(stream)
		appendMany(t, c, key, stream, -1, 5)
		if v := c.do("ESVER", stream); v.Type != resp3.Integer || v.Int != 4 {
			misses++
		}
		start := time.Now()
		visible(t, c, stream, key, 4)
		if time.Since(start) > 5*time.Second {
			t.Fatalf("an append took %s to become visible", time.Since(start))
		}
	}
	s.known(t, "read-your-writes",
		"SierraDB advances a partition's confirmation watermark asynchronously after replying, so a read right "+
			"after an append can miss it (or see a prefix of an EMAPPEND); the embedded server makes an append "+
			"visible before it replies. Code that reads after writing must tolerate the lag",
		func(t *testing.T) {
			if misses == 0 {
				t.Fatalf("no read right after an append missed it in %d rounds: the real server now makes appends "+
					"visible before replying; update this known difference and docs/sierradb-protocol.md", done)
			}
			t.Logf("the first read right after an append that missed it came in round %d", done)
		},
		func(t *testing.T) {
			if misses != 0 {
				t.Fatalf("%d of %d reads right after an append missed it", misses, done)
			}
		})
}
