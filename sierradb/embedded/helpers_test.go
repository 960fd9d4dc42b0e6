package embedded_test

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// client is a raw RESP3 connection for tests. Pushes read while waiting for a
// reply are queued for readPush.
type client struct {
	t      testing.TB
	nc     net.Conn
	r      *resp3.Reader
	w      *resp3.Writer
	pushes []resp3.Value
}

func dial(t testing.TB, srv *embedded.Server) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", srv.Addr(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, r: resp3.NewReader(nc), w: resp3.NewWriter(nc)}
}

// in returns the same connection reporting to t: a subtest uses its parent's
// connection through it, so that a failure ends the subtest, never the
// parent from the subtest's goroutine.
func (c *client) in(t testing.TB) *client {
	return &client{t: t, nc: c.nc, r: c.r, w: c.w, pushes: c.pushes}
}

// arg turns a Go value into a request element: strings become blob strings,
// ints integers, resp3.Value is sent as is.
func arg(a any) resp3.Value {
	switch v := a.(type) {
	case string:
		return resp3.Value{Type: resp3.BlobString, Str: []byte(v)}
	case []byte:
		return resp3.Value{Type: resp3.BlobString, Str: v}
	case int:
		return resp3.Value{Type: resp3.Integer, Int: int64(v)}
	case resp3.Value:
		return v
	}
	panic(fmt.Sprintf("arg: unsupported %T", a))
}

func simple(s string) resp3.Value { return resp3.Value{Type: resp3.SimpleString, Str: []byte(s)} }

func (c *client) send(args ...any) {
	c.t.Helper()
	v := resp3.Value{Type: resp3.Array}
	for _, a := range args {
		v.Elems = append(v.Elems, arg(a))
	}
	c.w.WriteValue(v)
	if err := c.w.Flush(); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// sendRaw writes bytes as they are.
func (c *client) sendRaw(b string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(b)); err != nil {
		c.t.Fatalf("send raw: %v", err)
	}
}

// readFrame reads the next frame of any kind.
func (c *client) readFrame() resp3.Value {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	v, err := c.r.ReadValue()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return v
}

// read returns the next reply, queueing pushes that come before it.
func (c *client) read() resp3.Value {
	c.t.Helper()
	for {
		v := c.readFrame()
		if v.Type != resp3.Push {
			return v
		}
		c.pushes = append(c.pushes, v)
	}
}

// readPush returns the next push; a reply in its place fails the test.
func (c *client) readPush() resp3.Value {
	c.t.Helper()
	if len(c.pushes) > 0 {
		v := c.pushes[0]
		c.pushes = c.pushes[1:]
		return v
	}
	v := c.readFrame()
	if v.Type != resp3.Push {
		c.t.Fatalf("want a push, got %s", v)
	}
	return v
}

func (c *client) do(args ...any) resp3.Value {
	c.t.Helper()
	c.send(args...)
	return c.read()
}

// expectClosed checks that the server closes the connection (after any
// replies still in flight).
func (c *client) expectClosed() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		v, err := c.r.ReadValue()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				c.t.Fatalf("connection still open")
			}
			return
		}
		_ = v
	}
}

func wantError(t testing.TB, v resp3.Value, text string) {
	t.Helper()
	if v.Type != resp3.SimpleError || string(v.Str) != text {
		t.Fatalf("got %s, want error %q", v, text)
	}
}

func wantErrorPrefix(t testing.TB, v resp3.Value, prefix string) {
	t.Helper()
	if v.Type != resp3.SimpleError || !strings.HasPrefix(string(v.Str), prefix) {
		t.Fatalf("got %s, want an error starting with %q", v, prefix)
	}
}

func wantSimple(t testing.TB, v resp3.Value, s string) {
	t.Helper()
	if v.Type != resp3.SimpleString || string(v.Str) != s {
		t.Fatalf("got %s, want simple string %q", v, s)
	}
}

func wantInt(t testing.TB, v resp3.Value, n int64) {
	t.Helper()
	if v.Type != resp3.Integer || v.Int != n {
		t.Fatalf("got %s, want integer %d", v, n)
	}
}

func wantNull(t testing.TB, v resp3.Value) {
	t.Helper()
	if v.Type != resp3.Null {
		t.Fatalf("got %s, want null", v)
	}
}

// field is one expected map entry: key, key frame type, value frame type.
type field struct {
	key     string
	keyType resp3.Type
	valType resp3.Type
}

// wantMapShape checks a map's keys, their order and frame types, and the
// frame types of the values.
func wantMapShape(t testing.TB, v resp3.Value, fields []field) {
	t.Helper()
	if v.Type != resp3.Map {
		t.Fatalf("got %s, want a map", v)
	}
	if v.Len() != len(fields) {
		t.Fatalf("map has %d entries, want %d: %s", v.Len(), len(fields), v)
	}
	for i, f := range fields {
		k, val := v.Elems[2*i], v.Elems[2*i+1]
		if string(k.Str) != f.key || k.Type != f.keyType {
			t.Fatalf("entry %d: key %s (%s), want %q (%s)", i, k, k.Type, f.key, f.keyType)
		}
		if val.Type != f.valType {
			t.Fatalf("entry %q: value %s is a %s, want %s", f.key, val, val.Type, f.valType)
		}
	}
}

func get(t testing.TB, m resp3.Value, key string) resp3.Value {
	t.Helper()
	v, ok := m.MapGet(key)
	if !ok {
		t.Fatalf("no %q in %s", key, m)
	}
	return v
}

func getInt(t testing.TB, m resp3.Value, key string) int64 {
	t.Helper()
	v := get(t, m, key)
	if v.Type != resp3.Integer {
		t.Fatalf("%q is %s, want an integer", key, v)
	}
	return v.Int
}

func getStr(t testing.TB, m resp3.Value, key string) string {
	t.Helper()
	return string(get(t, m, key).Str)
}

const (
	S = resp3.SimpleString
	B = resp3.BlobString
	I = resp3.Integer
)

// eventFields is the event map of docs/sierradb-protocol.md §2.1.
var eventFields = []field{
	{"event_id", S, S},
	{"partition_key", S, S},
	{"partition_id", S, I},
	{"transaction_id", S, S},
	{"partition_sequence", S, I},
	{"stream_version", S, I},
	{"timestamp", S, I},
	{"stream_id", S, B},
	{"event_name", S, B},
	{"metadata", S, B},
	{"payload", S, B},
}

// appendN appends n events "e0".."e<n-1>" to a stream with exact expected
// versions, over c, and fails the test on any error.
func appendN(t testing.TB, c *client, stream string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		exp := "empty"
		if i > 0 {
			exp = strconv.Itoa(i - 1)
		}
		v := c.do("EAPPEND", stream, "e"+strconv.Itoa(i), "EXPECTED_VERSION", exp, "PAYLOAD", "p"+strconv.Itoa(i))
		if v.Type != resp3.Map {
			t.Fatalf("append %d: %s", i, v)
		}
	}
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }
