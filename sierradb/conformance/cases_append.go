package conformance

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

var appendReplyFields = []field{
	{"event_id", resp3.SimpleString}, {"partition_key", resp3.SimpleString},
	{"partition_id", resp3.Integer}, {"partition_sequence", resp3.Integer},
	{"stream_version", resp3.Integer}, {"timestamp", resp3.Integer},
}

func testAppendReply(t *testing.T, s *suite) {
	c := s.conn(t)
	stream := name("reply")
	before := time.Now().UnixMilli()
	v := appendOK(t, c, stream, "empty")
	after := time.Now().UnixMilli()
	expectMap(t, "EAPPEND", v, resp3.SimpleString, appendReplyFields)
	key := streamKey(stream)
	if got := mustUUID(t, "partition_key", get(t, v, "partition_key")); got != key {
		t.Fatalf("partition_key %s, want UUIDv5 of the stream %s", got, key)
	}
	expectInt(t, "partition_id", get(t, v, "partition_id"), int64(s.partition(key)))
	expectInt(t, "stream_version", get(t, v, "stream_version"), 0)
	if ts := get(t, v, "timestamp").Int; ts < before-1000 || ts > after+1000 {
		t.Fatalf("timestamp %d is not the server's clock in ms (%d..%d)", ts, before, after)
	}
	id := mustUUID(t, "event_id", get(t, v, "event_id"))
	if !sierradb.EventIDMatchesPartitionKey(id, key) {
		t.Fatalf("event id %s does not embed the partition hash", id)
	}
	if str(get(t, v, "event_id")) != id.String() {
		t.Fatalf("event id %q is not lower-case hyphenated", str(get(t, v, "event_id")))
	}
	// Generated ids: 48-bit ms time first, the nibble 7 in the low half of
	// byte 7 (SierraDB's layout), RFC variant bits.
	ms := int64(id[0])<<40 | int64(id[1])<<32 | int64(id[2])<<24 | int64(id[3])<<16 | int64(id[4])<<8 | int64(id[5])
	if ms != get(t, v, "timestamp").Int || id[7]&0x0F != 7 || id[8]&0xC0 != 0x80 {
		t.Fatalf("generated event id %s has an unexpected layout (time %d)", id, ms)
	}
}

func testExpectedVersions(t *testing.T, s *suite) {
	c := s.conn(t)
	stream := name("ev")
	key := streamKey(stream)
	expectInt(t, "first", get(t, appendOK(t, c, stream, "empty"), "stream_version"), 0)
	expectInt(t, "second", get(t, appendOK(t, c, stream, "0"), "stream_version"), 1)
	expectInt(t, "third", get(t, appendOK(t, c, stream, "1"), "stream_version"), 2)
	want := func(cur, exp string) string {
		return fmt.Sprintf("WRONGVER current stream version is %s but expected %s for partition key %s and stream id %s", cur, exp, key, stream)
	}
	expectErrorText(t, c.do("EAPPEND", stream, "Ev", "EXPECTED_VERSION", "empty"), want("2", "empty"))
	expectErrorText(t, c.do("EAPPEND", stream, "Ev", "EXPECTED_VERSION", "1"), want("2", "1"))
	expectErrorText(t, c.do("EAPPEND", stream, "Ev", "EXPECTED_VERSION", "7"), want("2", "7"))
	fresh := name("ev")
	expectErrorText(t, c.do("EAPPEND", fresh, "Ev", "EXPECTED_VERSION", "0"),
		fmt.Sprintf("WRONGVER current stream version is empty but expected 0 for partition key %s and stream id %s", streamKey(fresh), fresh))
	// Keywords are case-insensitive.
	expectInt(t, "mixed case", get(t, appendOK(t, c, fresh, "Empty"), "stream_version"), 0)
	// The conflict text parses back into the typed error.
	err := sierradb.ParseServerError(str(c.do("EAPPEND", stream, "Ev", "EXPECTED_VERSION", "0")))
	if err.Code != sierradb.CodeWrongVersion {
		t.Fatalf("code %q", err.Code)
	}
}

func testStrictVersioning(t *testing.T, s *suite) {
	c := s.conn(t)
	stream := name("strict")
	expectErrorText(t, c.do("EAPPEND", stream, "Ev"), "INVALIDARG strict versioning mode rejects EXPECTED_VERSION any")
	expectErrorText(t, c.do("EAPPEND", stream, "Ev", "EXPECTED_VERSION", "any"), "INVALIDARG strict versioning mode rejects EXPECTED_VERSION any")
	expectErrorText(t, c.do("EAPPEND", stream, "Ev", "EXPECTED_VERSION", "ANY"), "INVALIDARG strict versioning mode rejects EXPECTED_VERSION any")
	expectErrorText(t, c.do("EAPPEND", stream, "Ev", "EXPECTED_VERSION", "exists"), "INVALIDARG strict versioning mode rejects EXPECTED_VERSION exists")
	key := uuid.New().String()
	expectErrorText(t, c.do("EMAPPEND", key, stream, "Ev"), "INVALIDARG strict versioning mode rejects EXPECTED_VERSION any")
	expectErrorText(t, c.do("EMAPPEND", key, stream, "Ev", "EXPECTED_VERSION", "empty", name("x"), "Ev", "EXPECTED_VERSION", "exists"),
		"INVALIDARG strict versioning mode rejects EXPECTED_VERSION exists")
	// Nothing was written by the rejected requests.
	expectNull(t, "ESVER", c.do("ESVER", stream))
	expectNull(t, "ESVER with key", c.do("ESVER", stream, "PARTITION_KEY", key))
}

func testAppendOptions(t *testing.T, s *suite) {
	c := s.conn(t)
	t.Run("payload, metadata and timestamp round-trip", func(t *testing.T) {
		stream := name("opts")
		payload := "bin\x00\r\n\xffary"
		v := c.do("EAPPEND", stream, "Named", "METADATA", "meta", "TIMESTAMP", "1700000000123", "PAYLOAD", payload, "EXPECTED_VERSION", "empty")
		expectInt(t, "timestamp", get(t, v, "timestamp"), 1700000000123)
		id := str(get(t, v, "event_id"))
		visible(t, c, stream, streamKey(stream), 0)
		ev := c.do("EGET", id)
		if str(get(t, ev, "payload")) != payload || str(get(t, ev, "metadata")) != "meta" || str(get(t, ev, "event_name")) != "Named" {
			t.Fatalf("EGET: %s", ev)
		}
		expectInt(t, "timestamp", get(t, ev, "timestamp"), 1700000000123)
	})
	t.Run("repeated options", func(t *testing.T) {
		stream := name("rep")
		for _, tc := range []struct {
			args []string
			what string
		}{
			{[]string{"EXPECTED_VERSION", "empty", "EXPECTED_VERSION", "empty"}, "expected version"},
			{[]string{"EXPECTED_VERSION", "exists", "EXPECTED_VERSION", "empty"}, "expected version"},
			{[]string{"EXPECTED_VERSION", "empty", "PAYLOAD", "a", "PAYLOAD", "b"}, "payload"},
			{[]string{"EXPECTED_VERSION", "empty", "METADATA", "a", "metadata", "b"}, "metadata"},
			{[]string{"EXPECTED_VERSION", "empty", "TIMESTAMP", "1", "TIMESTAMP", "2"}, "timestamp"},
			{[]string{"EXPECTED_VERSION", "empty", "EVENT_ID", uuid.NewString(), "EVENT_ID", uuid.NewString()}, "event id"},
			{[]string{"EXPECTED_VERSION", "empty", "PARTITION_KEY", uuid.NewString(), "PARTITION_KEY", uuid.NewString()}, "partition key"},
			// The repeat is found before a trailing argument.
			{[]string{"EXPECTED_VERSION", "empty", "EXPECTED_VERSION", "empty", "BOGUS"}, "expected version"},
		} {
			expectErrorText(t, c.do(append([]string{"EAPPEND", stream, "Ev"}, tc.args...)...), "INVALIDARG "+tc.what+" already specified")
		}
		expectErrorText(t, c.do("EMAPPEND", uuid.NewString(), stream, "Ev", "EXPECTED_VERSION", "empty", "EXPECTED_VERSION", "0"),
			"INVALIDARG expected version already specified")
		expectNull(t, "ESVER", c.do("ESVER", stream))
	})
	t.Run("repeat of a default value", func(t *testing.T) {
		// SierraDB finds a repeated option by comparing the value so far
		// with the default: a repeat after EXPECTED_VERSION any or an
		// empty PAYLOAD/METADATA is accepted, and the last value wins.
		stream := name("repdef")
		key := streamKey(stream)
		v := c.do("EAPPEND", stream, "Ev", "EXPECTED_VERSION", "any", "PAYLOAD", "", "EXPECTED_VERSION", "empty",
			"METADATA", "", "PAYLOAD", "second", "METADATA", "m2")
		expectInt(t, "version", get(t, v, "stream_version"), 0)
		visible(t, c, stream, key, 0)
		ev := c.do("EGET", str(get(t, v, "event_id")))
		if str(get(t, ev, "payload")) != "second" || str(get(t, ev, "metadata")) != "m2" {
			t.Fatalf("EGET: %s", ev)
		}
		// The later value applies: EXPECTED_VERSION empty now conflicts.
		expectError(t, c.do("EAPPEND", stream, "Ev", "EXPECTED_VERSION", "any", "EXPECTED_VERSION", "empty"), "WRONGVER ")
		// Repeating any itself leaves any, which strict versioning rejects.
		expectErrorText(t, c.do("EAPPEND", stream, "Ev", "EXPECTED_VERSION", "any", "EXPECTED_VERSION", "any"),
			"INVALIDARG strict versioning mode rejects EXPECTED_VERSION any")
		mstream := name("repdef")
		v = c.do("EMAPPEND", key.String(), mstream, "Ev", "EXPECTED_VERSION", "any", "PAYLOAD", "", "PAYLOAD", "x", "EXPECTED_VERSION", "empty")
		if v.Type != resp3.Map {
			t.Fatalf("EMAPPEND with repeated defaults: %s", v)
		}
	})
	t.Run("timestamps", func(t *testing.T) {
		stream := name("ts")
		expectErrorText(t, c.do("EAPPEND", stream, "Ev", "EXPECTED_VERSION", "empty", "TIMESTAMP", "18446744073709551615"),
			"INVALIDARG invalid timestamp format: expected milliseconds, got nanoseconds")
		expectError(t, c.do("EAPPEND", stream, "Ev", "EXPECTED_VERSION", "empty", "TIMESTAMP", "9300000000000"), "DBOPFAILED")
		expectError(t, c.do("EAPPEND", stream, "Ev", "EXPECTED_VERSION", "empty", "TIMESTAMP", "-5"), "INVALIDARG")
		expectInt(t, "zero timestamp", get(t, c.do("EAPPEND", stream, "Ev", "EXPECTED_VERSION", "empty", "TIMESTAMP", "0"), "timestamp"), 0)
	})
	t.Run("event names", func(t *testing.T) {
		stream := name("names")
		long := strings.Repeat("n", 255)
		appendOK(t, c, stream, "empty")
		v := c.do("EAPPEND", stream, long, "EXPECTED_VERSION", "0")
		expectInt(t, "255-byte name", get(t, v, "stream_version"), 1)
		expectError(t, c.do("EAPPEND", stream, long+"n", "EXPECTED_VERSION", "1"), "DBOPFAILED")
	})
}

func testEventIDs(t *testing.T, s *suite) {
	c := s.conn(t)
	stream := name("ids")
	key := streamKey(stream)
	id := sierradb.NewEventID(key)
	v := c.do("EAPPEND", stream, "Ev", "EVENT_ID", id.String(), "EXPECTED_VERSION", "empty")
	if mustUUID(t, "event_id", get(t, v, "event_id")) != id {
		t.Fatalf("supplied id not kept: %s", v)
	}
	// Accepted UUID forms: simple (32 hex), braced, urn.
	id2 := sierradb.NewEventID(key)
	v = c.do("EAPPEND", stream, "Ev", "EVENT_ID", strings.ReplaceAll(id2.String(), "-", ""), "EXPECTED_VERSION", "0")
	if str(get(t, v, "event_id")) != id2.String() {
		t.Fatalf("simple-form id came back as %s", get(t, v, "event_id"))
	}
	id3 := sierradb.NewEventID(key)
	v = c.do("EAPPEND", stream, "Ev", "EVENT_ID", "urn:uuid:"+id3.String(), "EXPECTED_VERSION", "1")
	if str(get(t, v, "event_id")) != id3.String() {
		t.Fatalf("urn-form id came back as %s", get(t, v, "event_id"))
	}
	bad := sierradb.WithPartitionHash(uuid.New(), sierradb.PartitionHash(key)^1)
	expectErrorText(t, c.do("EAPPEND", stream, "Ev", "EVENT_ID", bad.String(), "EXPECTED_VERSION", "2"),
		"the event id must embed the partition hash")
	expectErrorText(t, c.do("EMAPPEND", key.String(), stream, "Ev", "EVENT_ID", bad.String(), "EXPECTED_VERSION", "2"),
		"INVALIDARG the event id must embed the partition hash")
	// Nothing was written by the rejected appends.
	visible(t, c, stream, key, 2)
	if v := c.do("ESVER", stream); v.Int != 2 {
		t.Fatalf("ESVER after rejected appends: %s", v)
	}
}

func testStreamIDRules(t *testing.T, s *suite) {
	c := s.conn(t)
	max := strings.Repeat("s", 64)
	v := c.do("EAPPEND", max+"", "Ev", "EXPECTED_VERSION", "empty")
	if v.Type != resp3.Map {
		// A 64-byte stream may already exist from an earlier run.
		expectError(t, v, "WRONGVER")
	}
	for _, tc := range []struct{ id, text string }{
		{strings.Repeat("s", 65), "stream id must be between 1 and 64 characters in length, but got 65"},
		{"", "stream id must be between 1 and 64 characters in length, but got 0"},
		{"a\x00b", "stream id cannot contain null bytes"},
	} {
		for _, args := range [][]string{
			{"EAPPEND", tc.id, "Ev", "EXPECTED_VERSION", "empty"},
			{"ESCAN", tc.id, "-", "+"},
			{"ESVER", tc.id},
			{"EMAPPEND", uuid.NewString(), tc.id, "Ev", "EXPECTED_VERSION", "empty"},
		} {
			v := c.do(args...)
			expectError(t, v, "INVALIDARG")
			if !strings.Contains(str(v), tc.text) {
				t.Fatalf("%s %q: error %q does not say %q", args[0], tc.id, v.Str, tc.text)
			}
		}
	}
}

var multiReplyFields = []field{
	{"partition_key", resp3.SimpleString}, {"partition_id", resp3.Integer},
	{"first_partition_sequence", resp3.Integer}, {"last_partition_sequence", resp3.Integer},
	{"events", resp3.Array},
}

var multiEventFields = []field{
	{"event_id", resp3.SimpleString}, {"stream_id", resp3.SimpleString},
	{"stream_version", resp3.Integer}, {"timestamp", resp3.Integer},
}

func testMultiAppend(t *testing.T, s *suite) {
	c := s.conn(t)
	key := uuid.New()
	a, b := name("ma"), name("mb")
	v := c.do("EMAPPEND", key.String(),
		a, "A0", "EXPECTED_VERSION", "empty", "PAYLOAD", "x",
		b, "B0", "EXPECTED_VERSION", "empty", "TIMESTAMP", "1700000000000",
		a, "A1", "EXPECTED_VERSION", "0", "METADATA", "m")
	expectMap(t, "EMAPPEND", v, resp3.SimpleString, multiReplyFields)
	if mustUUID(t, "partition_key", get(t, v, "partition_key")) != key {
		t.Fatalf("partition key: %s", v)
	}
	expectInt(t, "partition_id", get(t, v, "partition_id"), int64(s.partition(key)))
	first := get(t, v, "first_partition_sequence").Int
	expectInt(t, "last", get(t, v, "last_partition_sequence"), first+2)
	evs := get(t, v, "events")
	if evs.Len() != 3 {
		t.Fatalf("events: %s", evs)
	}
	wantStreams := []string{a, b, a}
	wantVersions := []int64{0, 0, 1}
	var ids []string
	for i, e := range evs.Elems {
		expectMap(t, "EMAPPEND event", e, resp3.SimpleString, multiEventFields)
		if str(get(t, e, "stream_id")) != wantStreams[i] {
			t.Fatalf("event %d: stream %s", i, get(t, e, "stream_id"))
		}
		expectInt(t, "stream_version", get(t, e, "stream_version"), wantVersions[i])
		id := mustUUID(t, "event_id", get(t, e, "event_id"))
		if !sierradb.EventIDMatchesPartitionKey(id, key) {
			t.Fatalf("event id %s lacks the hash of the partition key", id)
		}
		ids = append(ids, id.String())
	}
	// Events without TIMESTAMP share one server time.
	if evs.Elems[0].Elems[7].Int != evs.Elems[2].Elems[7].Int {
		t.Fatalf("timestamps of one request differ: %s", evs)
	}
	expectInt(t, "given timestamp", get(t, evs.Elems[1], "timestamp"), 1700000000000)

	visible(t, c, a, key, 1)
	// One transaction id; its byte 8 has the top bit cleared for a
	// multi-event transaction.
	var txs []uuid.UUID
	for i, id := range ids {
		e := c.do("EGET", id)
		if seq := get(t, e, "partition_sequence").Int; seq != first+int64(i) {
			t.Fatalf("event %d has sequence %d, want %d", i, seq, first+int64(i))
		}
		if mustUUID(t, "partition_key", get(t, e, "partition_key")) != key {
			t.Fatal("event stored under another partition key")
		}
		txs = append(txs, mustUUID(t, "transaction_id", get(t, e, "transaction_id")))
	}
	if txs[0] != txs[1] || txs[1] != txs[2] || txs[0][8]&0x80 != 0 {
		t.Fatalf("transaction ids %v", txs)
	}
	single := appendOK(t, c, name("single"), "empty")
	e := eget(t, c, str(get(t, single, "event_id")))
	if tx := mustUUID(t, "transaction_id", get(t, e, "transaction_id")); tx[8]&0x80 == 0 {
		t.Fatalf("single-event transaction id %s has byte 8's top bit cleared", tx)
	}
	expectError(t, c.do("EMAPPEND", key.String()), "INVALIDARG")
	expectError(t, c.do("EMAPPEND", "not-a-key", a, "Ev", "EXPECTED_VERSION", "1"), "INVALIDARG")
	expectError(t, c.do("EMAPPEND", key.String(), a, "Ev", "PARTITION_KEY", key.String(), "EXPECTED_VERSION", "1"), "INVALIDARG")
}

// eget reads an event by id, waiting for it to become visible.
func eget(t testing.TB, c *conn, id string) resp3.Value {
	t.Helper()
	deadline := time.Now().Add(frameTimeout)
	for {
		v := c.do("EGET", id)
		if v.Type == resp3.Map {
			return v
		}
		if v.Type != resp3.Null || time.Now().After(deadline) {
			t.Fatalf("EGET %s: %s", id, v)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func testMultiAppendAtomicity(t *testing.T, s *suite) {
	c := s.conn(t)
	key := uuid.New()
	a, b := name("ta"), name("tb")
	appendMany(t, c, key, a, -1, 2)
	p := s.partition(key)
	visible(t, c, a, key, 1)
	before := c.do("EPSEQ", strconv.Itoa(int(p)))
	v := c.do("EMAPPEND", key.String(),
		b, "Ev", "EXPECTED_VERSION", "empty",
		a, "Ev", "EXPECTED_VERSION", "1",
		a, "Ev", "EXPECTED_VERSION", "5")
	expectErrorText(t, v, fmt.Sprintf("WRONGVER current stream version is 2 but expected 5 for partition key %s and stream id %s", key, a))
	// A barrier instead of a pause: an append to a third stream of the
	// partition, once visible, is ordered after anything the failed
	// request could have written, so a partial write would show now.
	barrier := name("tc")
	appendMany(t, c, key, barrier, -1, 1)
	visible(t, c, barrier, key, 0)
	expectNull(t, "ESVER of b", c.do("ESVER", b, "PARTITION_KEY", key.String()))
	expectInt(t, "ESVER of a", c.do("ESVER", a, "PARTITION_KEY", key.String()), 1)
	if after := c.do("EPSEQ", strconv.Itoa(int(p))); after.Int != before.Int+1 {
		t.Fatalf("partition sequence moved from %s to %s over a failed EMAPPEND and one append", before, after)
	}
	// The same request with a correct expectation goes through whole.
	v = c.do("EMAPPEND", key.String(),
		b, "Ev", "EXPECTED_VERSION", "empty",
		a, "Ev", "EXPECTED_VERSION", "1",
		a, "Ev", "EXPECTED_VERSION", "2")
	expectInt(t, "last", get(t, v, "last_partition_sequence"), get(t, v, "first_partition_sequence").Int+2)
}

func testPartitionMath(t *testing.T, s *suite) {
	c := s.conn(t)
	for _, stream := range []string{name("user"), name("order"), name("a"), name("x")} {
		v := appendOK(t, c, stream, "empty")
		key := streamKey(stream)
		if got := mustUUID(t, "partition_key", get(t, v, "partition_key")); got != key {
			t.Fatalf("stream %s: key %s, want %s", stream, got, key)
		}
		expectInt(t, "partition_id of "+stream, get(t, v, "partition_id"), int64(s.partition(key)))
	}
	for range 8 {
		key := uuid.New()
		stream := name("k")
		v := c.do("EAPPEND", stream, "Ev", "PARTITION_KEY", key.String(), "EXPECTED_VERSION", "empty")
		expectInt(t, "partition_id of key "+key.String(), get(t, v, "partition_id"), int64(s.partition(key)))
		if !sierradb.EventIDMatchesPartitionKey(mustUUID(t, "event_id", get(t, v, "event_id")), key) {
			t.Fatal("event id does not embed the custom key's hash")
		}
	}
	// The documented vectors, through EPSEQ's UUID selector: the
	// partition a key selects is the one PartitionID computes.
	for _, k := range []string{"7e124fe8-fe28-5398-bb95-53973100148f", "550e8400-e29b-41d4-a716-446655440000"} {
		key := uuid.MustParse(k)
		p := s.partition(key)
		byKey, byID := c.do("EPSEQ", k), c.do("EPSEQ", strconv.Itoa(int(p)))
		if byKey.Type != byID.Type || byKey.Int != byID.Int {
			t.Fatalf("EPSEQ %s = %s but EPSEQ %d = %s", k, byKey, p, byID)
		}
	}
}

func testPartitionKeyBinding(t *testing.T, s *suite) {
	c := s.conn(t)
	stream := name("bind")
	appendOK(t, c, stream, "empty")
	// A key in the same storage bucket: refused by both servers.
	same := s.keyInSameBucket(streamKey(stream))
	v := c.do("EAPPEND", stream, "Ev", "PARTITION_KEY", same.String(), "EXPECTED_VERSION", "empty")
	expectErrorText(t, v, fmt.Sprintf("DBOPFAILED database operation failed: partition key must be the same for all events in a stream: expected %s, got %s", streamKey(stream), same))
	// The binding is checked before the expected version.
	expectError(t, c.do("EAPPEND", stream, "Ev", "PARTITION_KEY", same.String(), "EXPECTED_VERSION", "0"), "DBOPFAILED")
	// A key in another bucket.
	other := s.keyInOtherBucket(streamKey(stream))
	v = c.do("EAPPEND", stream, "Ev", "PARTITION_KEY", other.String(), "EXPECTED_VERSION", "empty")
	s.known(t, "partition-key binding scope",
		"SierraDB records a stream's partition key per storage bucket (partition mod bucket count), so the same "+
			"stream id can be started again under a key in another bucket; the embedded server binds a stream id to "+
			"one key everywhere, as the protocol describes",
		func(t *testing.T) {
			expectInt(t, "version under a key in another bucket", get(t, v, "stream_version"), 0)
		},
		func(t *testing.T) {
			expectError(t, v, "DBOPFAILED database operation failed: partition key must be the same")
		})
}
