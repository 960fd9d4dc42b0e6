package conformance

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// Request arguments of other frame types than blob strings.
var (
	argInt   = func(n int64) resp3.Value { return resp3.Value{Type: resp3.Integer, Int: n} }
	argNull  = resp3.Value{Type: resp3.Null}
	argArray = resp3.Value{Type: resp3.Array}
	argBig   = func(s string) resp3.Value { return resp3.Value{Type: resp3.BigNumber, Str: []byte(s)} }
	argVerb  = func(format, s string) resp3.Value {
		return resp3.Value{Type: resp3.Verbatim, Format: format, Str: []byte(s)}
	}
)

// request builds a command from strings (sent as blob strings) and frames.
func request(args ...any) resp3.Value {
	v := resp3.Value{Type: resp3.Array}
	for _, a := range args {
		switch a := a.(type) {
		case string:
			v.Elems = append(v.Elems, blob(a))
		case resp3.Value:
			v.Elems = append(v.Elems, a)
		default:
			panic("request: unsupported argument")
		}
	}
	return v
}

// testParseErrors holds the parse errors of every command to SierraDB's
// texts, which its combine-based parser builds: the kind of the offending
// frame, and what the parser would have taken instead. An option whose value
// does not parse is not taken at all, so EAPPEND fails on its keyword and
// EMAPPEND starts its next event there.
func testParseErrors(t *testing.T, s *suite) {
	c := s.conn(t)
	key := uuid.NewString()
	const eappendOpts = "EVENT_ID, PARTITION_KEY, EXPECTED_VERSION, TIMESTAMP, PAYLOAD, METADATA or end of input"
	const emappendOpts = "stream id, event name, EVENT_ID, EXPECTED_VERSION, TIMESTAMP, PAYLOAD, METADATA or end of input"
	stream := name("parse")
	for _, tc := range []struct {
		args []any
		want string
	}{
		{[]any{"EAPPEND"}, "INVALIDARG unexpected end of input: expected stream id"},
		{[]any{"EAPPEND", stream}, "INVALIDARG unexpected end of input: expected event name"},
		{[]any{"EAPPEND", argInt(5)}, "INVALIDARG unexpected number: expected stream id"},
		{[]any{"EAPPEND", argArray}, "INVALIDARG unexpected array: expected stream id"},
		{[]any{"EAPPEND", string([]byte{0xff, 0xfe}), "Ev"}, "INVALIDARG unexpected string: expected stream id"},
		{[]any{"EAPPEND", argVerb("mkd", stream), "Ev"}, "INVALIDARG unexpected string: expected stream id"},
		{[]any{"EAPPEND", stream, argBig("12")}, "INVALIDARG unexpected number: expected event name"},
		{[]any{"EAPPEND", stream, "Ev", "BOGUS"}, "INVALIDARG unexpected string: expected " + eappendOpts},
		{[]any{"EAPPEND", stream, "Ev", "EXPECTED_VERSION", "empty", "BOGUS"}, "INVALIDARG unexpected string: expected " + eappendOpts},
		{[]any{"EAPPEND", stream, "Ev", "EXPECTED_VERSION"}, "INVALIDARG unexpected string: expected " + eappendOpts},
		{[]any{"EAPPEND", stream, "Ev", "EXPECTED_VERSION", "nope"}, "INVALIDARG unexpected string: expected " + eappendOpts},
		{[]any{"EAPPEND", stream, "Ev", "EXPECTED_VERSION", argInt(-1)}, "INVALIDARG unexpected string: expected " + eappendOpts},
		{[]any{"EAPPEND", stream, "Ev", "EVENT_ID", "nope", "EXPECTED_VERSION", "empty"}, "INVALIDARG unexpected string: expected " + eappendOpts},
		{[]any{"EAPPEND", stream, "Ev", "PARTITION_KEY", "zzz", "EXPECTED_VERSION", "empty"}, "INVALIDARG unexpected string: expected " + eappendOpts},
		{[]any{"EAPPEND", stream, "Ev", "EXPECTED_VERSION", "empty", "PAYLOAD", argInt(5)}, "INVALIDARG unexpected string: expected " + eappendOpts},
		{[]any{"EAPPEND", stream, "Ev", "EXPECTED_VERSION", "empty", "PAYLOAD", argVerb("mkd", "x")}, "INVALIDARG unexpected string: expected " + eappendOpts},
		{[]any{"EAPPEND", stream, "Ev", argInt(5)}, "INVALIDARG unexpected number: expected " + eappendOpts},
		{[]any{"EAPPEND", stream, "Ev", argNull}, "INVALIDARG unexpected null: expected " + eappendOpts},
		{[]any{"EMAPPEND"}, "INVALIDARG unexpected end of input: expected partition key"},
		{[]any{"EMAPPEND", "nope"}, "INVALIDARG invalid partition key"},
		{[]any{"EMAPPEND", argInt(5)}, "INVALIDARG unexpected number: expected partition key"},
		{[]any{"EMAPPEND", key}, "INVALIDARG unexpected end of input: expected stream id"},
		{[]any{"EMAPPEND", key, argInt(5)}, "INVALIDARG unexpected number: expected stream id"},
		{[]any{"EMAPPEND", key, stream}, "INVALIDARG unexpected end of input: expected event name"},
		{[]any{"EMAPPEND", key, stream, "Ev", "EXPECTED_VERSION", "empty", "BOGUS"}, "INVALIDARG unexpected end of input: expected event name"},
		{[]any{"EMAPPEND", key, stream, "Ev", "EXPECTED_VERSION", "empty", "PAYLOAD"}, "INVALIDARG unexpected end of input: expected event name"},
		{[]any{"EMAPPEND", key, stream, "Ev", "EXPECTED_VERSION", "empty", "PAYLOAD", argInt(5)}, "INVALIDARG unexpected number: expected event name"},
		{[]any{"EMAPPEND", key, stream, "Ev", "EXPECTED_VERSION", "nope"}, "INVALIDARG strict versioning mode rejects EXPECTED_VERSION any"},
		{[]any{"EMAPPEND", key, stream, "Ev", "EXPECTED_VERSION", "empty", argInt(5)}, "INVALIDARG unexpected number: expected " + emappendOpts},
		{[]any{"EMAPPEND", key, stream, "Ev", "EXPECTED_VERSION", "empty", string([]byte{0xff})}, "INVALIDARG unexpected string: expected " + emappendOpts},
		{[]any{"EMAPPEND", key, stream, "Ev", "EXPECTED_VERSION", "empty", argNull, "x"}, "INVALIDARG unexpected null: expected " + emappendOpts},
		{[]any{"EGET"}, "INVALIDARG unexpected end of input: expected event id"},
		{[]any{"EGET", "nope"}, "INVALIDARG invalid event id"},
		{[]any{"EGET", "URN:UUID:" + key}, "INVALIDARG invalid event id"},
		{[]any{"EGET", argInt(5)}, "INVALIDARG unexpected number: expected event id"},
		{[]any{"EGET", string([]byte{0xff})}, "INVALIDARG unexpected string: expected event id"},
		{[]any{"EGET", key, "x"}, "INVALIDARG unexpected string: expected end of input"},
		{[]any{"ESCAN", stream}, "INVALIDARG unexpected end of input: expected range value (-, +, or number)"},
		{[]any{"ESCAN", stream, "x", "+"}, "INVALIDARG unexpected string: expected range value (-, +, or number)"},
		{[]any{"ESCAN", stream, "-1", "+"}, "INVALIDARG unexpected string: expected range value (-, +, or number)"},
		{[]any{"ESCAN", stream, argInt(-1), "+"}, "INVALIDARG unexpected number: expected range value (-, +, or number)"},
		{[]any{"ESCAN", stream, "-", "+", "BOGUS"}, "INVALIDARG unexpected string: expected PARTITION_KEY, COUNT or end of input"},
		{[]any{"ESCAN", stream, "-", "+", "COUNT"}, "INVALIDARG unexpected string: expected PARTITION_KEY, COUNT or end of input"},
		{[]any{"ESCAN", stream, "-", "+", "COUNT", "x"}, "INVALIDARG unexpected string: expected PARTITION_KEY, COUNT or end of input"},
		{[]any{"ESCAN", stream, "-", "+", "PARTITION_KEY", "nope"}, "INVALIDARG unexpected string: expected PARTITION_KEY, COUNT or end of input"},
		{[]any{"ESCAN", stream, "-", "+", "COUNT", "1", "COUNT", "2"}, "INVALIDARG count already specified"},
		{[]any{"ESCAN", stream, "+", "-", "BOGUS"}, "INVALIDARG unexpected string: expected PARTITION_KEY, COUNT or end of input"},
		{[]any{"ESVER"}, "INVALIDARG unexpected end of input: expected stream id"},
		{[]any{"ESVER", stream, "BOGUS"}, "INVALIDARG unexpected string: expected end of input"},
		{[]any{"ESVER", stream, "PARTITION_KEY"}, "INVALIDARG unexpected end of input: expected partition key"},
		{[]any{"ESVER", stream, "PARTITION_KEY", "nope"}, "INVALIDARG invalid partition key"},
		{[]any{"ESVER", stream, "PARTITION_KEY", argInt(5)}, "INVALIDARG unexpected number: expected partition key"},
		{[]any{"ESVER", stream, "PARTITION_KEY", key, "PARTITION_KEY", key}, "INVALIDARG unexpected string: expected end of input"},
		{[]any{"EPSCAN"}, "INVALIDARG unexpected end of input: expected partition id or key"},
		{[]any{"EPSCAN", "x", "-", "+"}, "INVALIDARG unexpected string: expected partition id or key"},
		{[]any{"EPSCAN", "70000", "-", "+"}, "INVALIDARG unexpected string: expected partition id or key"},
		{[]any{"EPSCAN", resp3.Value{Type: resp3.Boolean, Bool: true}, "-", "+"}, "INVALIDARG unexpected boolean: expected partition id or key"},
		{[]any{"EPSCAN", "1", "-", "+", "BOGUS"}, "INVALIDARG unexpected string: expected COUNT, number or end of input"},
		{[]any{"EPSCAN", "1", "0", "5", "BOGUS"}, "INVALIDARG unexpected string: expected COUNT, number or end of input"},
		{[]any{"EPSCAN", "1", "-", "+", "COUNT"}, "INVALIDARG unexpected end of input: expected number"},
		{[]any{"EPSCAN", "1", "-", "+", "COUNT", "x"}, "INVALIDARG unexpected string: expected number"},
		{[]any{"EPSCAN", "1", "-", "+", "COUNT", "1", "COUNT", "1"}, "INVALIDARG count already specified"},
		{[]any{"EPSCAN", "1", "+", "-", "BOGUS"}, "INVALIDARG unexpected string: expected COUNT, number or end of input"},
		{[]any{"EPSEQ", "x"}, "INVALIDARG unexpected string: expected partition id or key"},
		{[]any{"EPSEQ", "1", "2"}, "INVALIDARG unexpected string: expected end of input"},
		{[]any{"EPSUB"}, "INVALIDARG unexpected end of input: expected *, partition id or comma-separated partition ids"},
		{[]any{"EPSUB", "x"}, "INVALIDARG unexpected string: expected *, partition id or comma-separated partition ids"},
		{[]any{"EPSUB", "1,,2"}, "INVALIDARG unexpected string: expected *, partition id or comma-separated partition ids"},
		{[]any{"EPSUB", argInt(70000)}, "INVALIDARG unexpected number: expected *, partition id or comma-separated partition ids"},
		{[]any{"EPSUB", argNull}, "INVALIDARG unexpected null: expected *, partition id or comma-separated partition ids"},
		{[]any{"EPSUB", "1", "BOGUS"}, "INVALIDARG unexpected string: expected end of input"},
		{[]any{"EPSUB", "1", "FROM"}, "INVALIDARG unexpected end of input: expected LATEST, number or MAP"},
		{[]any{"EPSUB", "1", "FROM", "x"}, "INVALIDARG unexpected string: expected LATEST, number or MAP"},
		{[]any{"EPSUB", "*", "FROM", argNull}, "INVALIDARG unexpected null: expected LATEST, number or MAP"},
		{[]any{"EPSUB", "*", "FROM", "MAP"}, "INVALIDARG unexpected end of input: expected partition id sequence value"},
		{[]any{"EPSUB", "*", "FROM", "MAP", "x"}, "INVALIDARG unexpected string: expected partition id sequence value"},
		{[]any{"EPSUB", "*", "FROM", "MAP", " 1=5"}, "INVALIDARG unexpected string: expected partition id sequence value"},
		{[]any{"EPSUB", "*", "FROM", "MAP", "1=5", "x"}, "INVALIDARG unexpected string: expected end of input"},
		{[]any{"EPSUB", "1,2", "FROM", "MAP", "1=5", "2=x"}, "INVALIDARG unexpected string: expected end of input"},
		{[]any{"EPSUB", "*", "FROM", "MAP", "1=5", "DEFAULT"}, "INVALIDARG unexpected end of input: expected number"},
		{[]any{"EPSUB", "*", "FROM", "MAP", "1=5", "DEFAULT", "x"}, "INVALIDARG unexpected string: expected number"},
		{[]any{"EPSUB", "*", "FROM", "MAP", "1=5", "WINDOW", "x"}, "INVALIDARG unexpected string: expected number"},
		{[]any{"EPSUB", "*", "WINDOW"}, "INVALIDARG unexpected end of input: expected number"},
		{[]any{"EPSUB", "1", "WINDOW", "x"}, "INVALIDARG unexpected string: expected number"},
		{[]any{"EPSUB", "1", "WINDOW", argInt(0)}, "INVALIDARG number 0 must not be less than 1"},
		{[]any{"EPSUB", "*", "WINDOW", "5", "FROM", "0"}, "INVALIDARG unexpected string: expected end of input"},
		{[]any{"EPSUB", "*", "FROM", "0", "FROM", "1"}, "INVALIDARG unexpected string: expected end of input"},
		{[]any{"EPSUB", "*", "WINDOW", "5", "WINDOW", "6"}, "INVALIDARG unexpected string: expected end of input"},
		{[]any{"ESUB"}, "INVALIDARG unexpected end of input: expected stream id"},
		{[]any{"ESUB", argInt(1)}, "INVALIDARG unexpected number: expected stream id"},
		{[]any{"ESUB", stream, "PARTITION_KEY"}, "INVALIDARG unexpected end of input: expected partition key"},
		{[]any{"ESUB", stream, "PARTITION_KEY", "nope"}, "INVALIDARG invalid partition key"},
		{[]any{"ESUB", stream, argInt(5)}, "INVALIDARG unexpected number: expected end of input"},
		{[]any{"EACK"}, "INVALIDARG unexpected end of input: expected subscription id"},
		{[]any{"EACK", "x", "1"}, "INVALIDARG invalid subscription id"},
		{[]any{"EACK", key}, "INVALIDARG unexpected end of input: expected number"},
		{[]any{"EACK", key, "-1"}, "INVALIDARG unexpected string: expected number"},
		{[]any{"EACK", key, "1", "x"}, "INVALIDARG unexpected string: expected end of input"},
		{[]any{"HELLO"}, "INVALIDARG unexpected end of input: expected number"},
		{[]any{"HELLO", "x"}, "INVALIDARG unexpected string: expected number"},
		{[]any{"HELLO", "3.0"}, "INVALIDARG unexpected string: expected number"},
		{[]any{"HELLO", "-3"}, "unsupported version -3, only 3 is supported"},
		{[]any{"HELLO", argInt(3), argInt(3)}, "INVALIDARG unexpected number: expected end of input"},
		{[]any{"INFO"}, "INVALIDARG unexpected end of input: expected CACHE"},
		{[]any{"INFO", "x"}, "INVALIDARG unexpected string: expected CACHE"},
		{[]any{"INFO", argInt(1)}, "INVALIDARG unexpected number: expected CACHE"},
		{[]any{"INFO", "CACHE", argNull}, "INVALIDARG unexpected null: expected end of input"},
		{[]any{"PING", "x"}, "INVALIDARG unexpected string: expected end of input"},
		{[]any{"PING", argInt(1)}, "INVALIDARG unexpected number: expected end of input"},
	} {
		c.sendValue(request(tc.args...))
		v := c.reply()
		if v.Type != resp3.SimpleError || str(v) != tc.want {
			t.Errorf("%s: got %s, want error %q", strings.TrimPrefix(request(tc.args...).String(), "*"), v, tc.want)
		}
	}
	// Nothing was written, and the connection still works.
	expectNull(t, "ESVER", c.do("ESVER", stream))
	expectNull(t, "ESVER", c.do("ESVER", stream, "PARTITION_KEY", key))
	expectSimple(t, c.do("PING"), "PONG")
}

// testArgumentTypes: what counts as a number or a string argument.
func testArgumentTypes(t *testing.T, s *suite) {
	c := s.conn(t)
	stream := name("types")
	// A leading '+' is part of a number, as in Rust; a verbatim string of
	// format txt is a string, of another format not.
	c.sendValue(request("EAPPEND", argVerb("txt", stream), "Ev", argVerb("txt", "EXPECTED_VERSION"), argVerb("txt", "empty"),
		"TIMESTAMP", "+5"))
	v := c.reply()
	expectInt(t, "timestamp", get(t, v, "timestamp"), 5)
	expectInt(t, "version", get(t, c.do("EAPPEND", stream, "Ev", "EXPECTED_VERSION", "+0", "PAYLOAD", "x"), "stream_version"), 1)
	visible(t, c, stream, streamKey(stream), 1)
	c.sendValue(request("ESCAN", stream, argInt(0), argBig("5"), "COUNT", "+3"))
	if evs := get(t, c.reply(), "events"); evs.Len() != 2 {
		t.Fatalf("ESCAN with a big number and +3: %d events", evs.Len())
	}
	c.sendValue(request("HELLO", argBig("3")))
	expectInt(t, "num_partitions", get(t, c.reply(), "num_partitions"), int64(s.cfg.PartitionCount))
	expectInt(t, "num_partitions", get(t, c.do("HELLO", "+3"), "num_partitions"), int64(s.cfg.PartitionCount))
	c.sendValue(request("EPSEQ", argBig("1")))
	if v := c.reply(); v.Type != resp3.Integer && v.Type != resp3.Null {
		t.Fatalf("EPSEQ with a big number: %s", v)
	}
	// The UUID forms SierraDB accepts: urn (lower case), braces, 32 digits.
	id := sierradb.NewEventID(streamKey(stream))
	for _, form := range []string{"urn:uuid:" + id.String(), "{" + id.String() + "}", strings.ReplaceAll(id.String(), "-", ""), " " + id.String() + " "} {
		expectNull(t, "EGET "+form, c.do("EGET", form))
	}
}

// testEventIDNil: the nil UUID is an event id like any other. Its partition
// hash is 0, so it is refused under a key whose hash is not, and accepted
// (and found by EGET) under a key whose hash is 0.
func testEventIDNil(t *testing.T, s *suite) {
	c := s.conn(t)
	stream := name("nilid")
	key := streamKey(stream)
	if sierradb.PartitionHash(key) == 0 {
		t.Skip("the random stream's key has hash 0")
	}
	nilID := uuid.Nil.String()
	expectErrorText(t, c.do("EAPPEND", stream, "Ev", "EVENT_ID", nilID, "EXPECTED_VERSION", "empty"),
		"the event id must embed the partition hash")
	expectErrorText(t, c.do("EMAPPEND", key.String(), stream, "Ev", "EVENT_ID", nilID, "EXPECTED_VERSION", "empty"),
		"INVALIDARG the event id must embed the partition hash")
	expectNull(t, "ESVER", c.do("ESVER", stream))

	zero := sierradb.WithPartitionHash(uuid.New(), 0)
	payload := name("payload")
	v := c.do("EMAPPEND", zero.String(), stream, "Ev", "EVENT_ID", nilID, "EXPECTED_VERSION", "empty", "PAYLOAD", payload)
	if v.Type != resp3.Map || str(get(t, get(t, v, "events").Elems[0], "event_id")) != nilID {
		t.Fatalf("EMAPPEND with the nil id under a hash-0 key: %s", v)
	}
	visible(t, c, stream, zero, 0)
	ev := c.do("EGET", nilID)
	if str(get(t, ev, "event_id")) != nilID || str(get(t, ev, "payload")) != payload {
		t.Fatalf("EGET of the nil id: %s", ev)
	}
}
