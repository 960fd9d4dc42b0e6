package conformance

import (
	"testing"
	"time"

	"github.com/esmill/esmill/sierradb/internal/resp3"
)

func blob(s string) resp3.Value { return resp3.Value{Type: resp3.BlobString, Str: []byte(s)} }

func testFraming(t *testing.T, s *suite) {
	t.Run("non-array request", func(t *testing.T) {
		c := s.conn(t)
		c.sendValue(resp3.Value{Type: resp3.SimpleString, Str: []byte("PING")})
		expectErrorText(t, c.reply(), "expected array command")
		expectSimple(t, c.do("PING"), "PONG")
	})
	t.Run("empty array", func(t *testing.T) {
		c := s.conn(t)
		c.sendValue(resp3.Value{Type: resp3.Array})
		expectErrorText(t, c.reply(), "empty command")
	})
	t.Run("command name not a string", func(t *testing.T) {
		c := s.conn(t)
		c.sendValue(resp3.Value{Type: resp3.Array, Elems: []resp3.Value{{Type: resp3.Integer, Int: 1}}})
		expectErrorText(t, c.reply(), "INVALIDARG invalid type for command name")
	})
	t.Run("unknown command", func(t *testing.T) {
		c := s.conn(t)
		expectErrorText(t, c.do("nosuch", "x"), "INVALIDARG unknown command 'NOSUCH'")
		for _, cmd := range []string{"AUTH", "SELECT", "CLIENT", "QUIT", "COMMAND"} {
			expectErrorText(t, c.do(cmd), "INVALIDARG unknown command '"+cmd+"'")
		}
	})
	t.Run("command names are case-insensitive", func(t *testing.T) {
		c := s.conn(t)
		expectSimple(t, c.do("pInG"), "PONG")
	})
	t.Run("pipelining", func(t *testing.T) {
		c := s.conn(t)
		stream := name("pipe")
		c.w.WriteCommand("EAPPEND", stream, "Ev", "EXPECTED_VERSION", "empty")
		c.w.WriteCommand("PING")
		c.w.WriteCommand("EAPPEND", stream, "Ev", "EXPECTED_VERSION", "0")
		c.w.WriteCommand("NOSUCH")
		c.w.WriteCommand("PING")
		c.w.Flush()
		expectInt(t, "first append", get(t, c.reply(), "stream_version"), 0)
		expectSimple(t, c.reply(), "PONG")
		expectInt(t, "second append", get(t, c.reply(), "stream_version"), 1)
		expectError(t, c.reply(), "INVALIDARG")
		expectSimple(t, c.reply(), "PONG")
	})
	t.Run("garbage closes only that connection", func(t *testing.T) {
		other := s.conn(t)
		c := s.conn(t)
		c.nc.Write([]byte("this is not RESP\r\n"))
		if !c.closedByServer(3 * time.Second) {
			t.Fatal("the server kept a connection open after an undecodable frame")
		}
		expectSimple(t, other.do("PING"), "PONG")
	})
	t.Run("oversize declared length", func(t *testing.T) {
		other := s.conn(t)
		c := s.conn(t)
		c.nc.Write([]byte("*1\r\n$99999999999999\r\nPING\r\n"))
		closed := c.closedByServer(2 * time.Second)
		s.known(t, "oversize declared length",
			"SierraDB waits for the bytes a blob declares, however many; the embedded server refuses a frame "+
				"longer than its limit (256 MiB) and closes the connection",
			func(t *testing.T) {
				if closed {
					t.Fatal("the connection was closed")
				}
			},
			func(t *testing.T) {
				if !closed {
					t.Fatal("the connection stayed open")
				}
			})
		expectSimple(t, other.do("PING"), "PONG")
	})
	t.Run("truncated frame then close", func(t *testing.T) {
		other := s.conn(t)
		c := s.conn(t)
		c.nc.Write([]byte("*3\r\n$7\r\nEAPPEND\r\n$3\r\nab"))
		c.close()
		expectSimple(t, other.do("PING"), "PONG")
	})
}

func testPing(t *testing.T, s *suite) {
	c := s.conn(t)
	expectSimple(t, c.do("PING"), "PONG")
	expectError(t, c.do("PING", "hello"), "INVALIDARG")
}

func testHello(t *testing.T, s *suite) {
	c := s.conn(t)
	v := c.do("HELLO", "3")
	expectMap(t, "HELLO", v, resp3.BlobString, []field{
		{"server", resp3.BlobString}, {"version", resp3.BlobString},
		{"peer_id", resp3.BlobString}, {"num_partitions", resp3.Integer},
	})
	if str(get(t, v, "server")) != "sierradb" || str(get(t, v, "version")) != "0.3.1" || len(str(get(t, v, "peer_id"))) == 0 {
		t.Fatalf("HELLO: %s", v)
	}
	expectInt(t, "num_partitions", get(t, v, "num_partitions"), int64(s.cfg.PartitionCount))
	expectErrorText(t, c.do("HELLO", "2"), "unsupported version 2, only 3 is supported")
	expectError(t, c.do("HELLO", "3", "SETNAME", "x"), "INVALIDARG")
	expectError(t, c.do("HELLO", "3", "AUTH", "u", "p"), "INVALIDARG")
	expectError(t, c.do("HELLO"), "INVALIDARG")
	// HELLO changes nothing: the connection speaks RESP3 either way.
	expectSimple(t, c.do("PING"), "PONG")
}

func testInfo(t *testing.T, s *suite) {
	c := s.conn(t)
	v := c.do("INFO", "cache")
	expectMap(t, "INFO CACHE", v, resp3.BlobString, []field{
		{"hits", resp3.Integer}, {"misses", resp3.Integer}, {"hit_ratio", resp3.Double},
		{"entries", resp3.Integer}, {"memory_bytes", resp3.Integer}, {"max_bytes", resp3.Integer},
		{"block_size_bytes", resp3.Integer}, {"evictions", resp3.Integer},
	})
	expectInt(t, "block_size_bytes", get(t, v, "block_size_bytes"), 65536)
	expectError(t, c.do("INFO"), "INVALIDARG")
	expectError(t, c.do("INFO", "server"), "INVALIDARG")
}

func testArgumentForms(t *testing.T, s *suite) {
	c := s.conn(t)
	stream := name("forms")
	t.Run("simple strings as arguments", func(t *testing.T) {
		c.sendValue(resp3.Value{Type: resp3.Array, Elems: []resp3.Value{
			{Type: resp3.SimpleString, Str: []byte("EAPPEND")},
			{Type: resp3.SimpleString, Str: []byte(stream)},
			{Type: resp3.SimpleString, Str: []byte("Ev")},
			{Type: resp3.SimpleString, Str: []byte("expected_version")},
			{Type: resp3.SimpleString, Str: []byte("EMPTY")},
		}})
		expectInt(t, "version", get(t, c.reply(), "stream_version"), 0)
	})
	t.Run("integer frames as numbers", func(t *testing.T) {
		c.sendValue(resp3.Value{Type: resp3.Array, Elems: []resp3.Value{
			blob("EAPPEND"), blob(stream), blob("Ev"), blob("EXPECTED_VERSION"), {Type: resp3.Integer, Int: 0},
		}})
		expectInt(t, "version", get(t, c.reply(), "stream_version"), 1)
		visible(t, c, stream, streamKey(stream), 1)
		c.sendValue(resp3.Value{Type: resp3.Array, Elems: []resp3.Value{
			blob("ESCAN"), blob(stream), {Type: resp3.Integer, Int: 1}, blob("+"), blob("COUNT"), {Type: resp3.Integer, Int: 5},
		}})
		if evs := get(t, c.reply(), "events"); evs.Len() != 1 {
			t.Fatalf("ESCAN with integer arguments returned %d events", evs.Len())
		}
	})
	t.Run("trailing arguments", func(t *testing.T) {
		expectError(t, c.do("ESVER", stream, "extra"), "INVALIDARG")
		expectError(t, c.do("EGET", "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "extra"), "INVALIDARG")
		expectError(t, c.do("EPSEQ", "0", "1"), "INVALIDARG")
	})
	t.Run("missing arguments", func(t *testing.T) {
		expectError(t, c.do("EAPPEND", stream), "INVALIDARG")
		expectError(t, c.do("EGET"), "INVALIDARG")
		expectError(t, c.do("ESCAN", stream, "0"), "INVALIDARG")
		expectError(t, c.do("EMAPPEND", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"), "INVALIDARG")
		expectError(t, c.do("EACK", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"), "INVALIDARG")
	})
	t.Run("bad values", func(t *testing.T) {
		expectError(t, c.do("EGET", "not-a-uuid"), "INVALIDARG")
		expectError(t, c.do("ESCAN", stream, "x", "+"), "INVALIDARG")
		expectError(t, c.do("ESCAN", stream, "0", "+", "COUNT", "-1"), "INVALIDARG")
		expectError(t, c.do("EAPPEND", stream, "Ev", "EXPECTED_VERSION", "soon"), "INVALIDARG")
		expectError(t, c.do("EAPPEND", stream, "Ev", "BOGUS", "1"), "INVALIDARG")
	})
}
