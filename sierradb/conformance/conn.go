package conformance

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// frameTimeout bounds every wait for a frame the server must send.
const frameTimeout = 10 * time.Second

// conn is a raw RESP3 connection that queues push frames apart from
// replies.
type conn struct {
	t      testing.TB
	nc     net.Conn
	r      *resp3.Reader
	w      *resp3.Writer
	pushes []resp3.Value
	// acks counts EACKs sent with sendAck whose +OK is still to come.
	acks int
	// forwarded is set on a connection to a cluster's Replica: it counts
	// the forwarded error replies that reply turns back into the
	// coordinator's.
	forwarded *atomic.Int64
}

func dial(t testing.TB, addr string) *conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c := &conn{t: t, nc: nc, r: resp3.NewReader(nc), w: resp3.NewWriter(nc)}
	t.Cleanup(func() { nc.Close() })
	return c
}

func (c *conn) close() { c.nc.Close() }

// send writes one command without reading anything.
func (c *conn) send(args ...string) {
	c.t.Helper()
	c.w.WriteCommand(args...)
	if err := c.w.Flush(); err != nil {
		c.t.Fatalf("write %s: %v", args[0], err)
	}
}

// sendValue writes an arbitrary frame.
func (c *conn) sendValue(v resp3.Value) {
	c.t.Helper()
	c.w.WriteValue(v)
	if err := c.w.Flush(); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// sendAck sends an EACK without waiting: its reply is skipped by the
// next read of a push.
func (c *conn) sendAck(sub string, cursor int64) {
	c.t.Helper()
	c.acks++
	c.send("EACK", sub, strconv.FormatInt(cursor, 10))
}

// read returns the next frame of any kind.
func (c *conn) read(timeout time.Duration) (resp3.Value, error) {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	return c.r.ReadValue()
}

// reply returns the next frame that is not a push; pushes are queued.
func (c *conn) reply() resp3.Value {
	c.t.Helper()
	for {
		v, err := c.read(frameTimeout)
		if err != nil {
			c.t.Fatalf("reading reply: %v", err)
		}
		if v.Type == resp3.Push {
			c.pushes = append(c.pushes, v)
			continue
		}
		if c.forwarded != nil && v.IsError() {
			if orig, ok := unforward(string(v.Str)); ok {
				c.forwarded.Add(1)
				v.Str = []byte(orig)
			}
		}
		return v
	}
}

// roundTrip sends a command and returns its reply, or the error, without
// touching the test: for goroutines other than the test's own. The
// connection must carry no subscription (a push is an error here).
func (c *conn) roundTrip(args ...string) (resp3.Value, error) {
	c.w.WriteCommand(args...)
	if err := c.w.Flush(); err != nil {
		return resp3.Value{}, err
	}
	v, err := c.read(frameTimeout)
	if err == nil && v.Type == resp3.Push {
		err = fmt.Errorf("unexpected push %s", v)
	}
	return v, err
}

// forwardedPrefix starts an error that a node got back from the node it
// forwarded a request to: the remote error's text without its code.
const forwardedPrefix = "REMOTEOPFAILED remote operation failed: "

// unforward returns the error the coordinator itself would have sent for
// an error a replica forwarded: its code comes back from the text
// (ClusterForwardedErrors pins the forwarded form).
func unforward(text string) (string, bool) {
	rest, ok := strings.CutPrefix(text, forwardedPrefix)
	if !ok {
		return "", false
	}
	switch {
	case strings.HasPrefix(rest, "current stream version is "):
		return "WRONGVER " + rest, true
	case strings.HasPrefix(rest, "database operation failed: "):
		return "DBOPFAILED " + rest, true
	}
	return "", false
}

// do sends a command and returns its reply.
func (c *conn) do(args ...string) resp3.Value {
	c.t.Helper()
	c.send(args...)
	return c.reply()
}

// push returns the next push frame, or fails after timeout.
func (c *conn) push(timeout time.Duration) resp3.Value {
	c.t.Helper()
	v, ok := c.tryPush(timeout)
	if !ok {
		c.t.Fatalf("no push frame within %s", timeout)
	}
	return v
}

// tryPush returns the next push frame, or false if none arrives in time.
// A reply frame arriving meanwhile is a failure.
func (c *conn) tryPush(timeout time.Duration) (resp3.Value, bool) {
	c.t.Helper()
	if len(c.pushes) > 0 {
		v := c.pushes[0]
		c.pushes = c.pushes[1:]
		return v, true
	}
	v, err := c.read(timeout)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return resp3.Value{}, false
		}
		c.t.Fatalf("reading push: %v", err)
	}
	for c.acks > 0 && v.Type != resp3.Push {
		if v.Type != resp3.SimpleString || string(v.Str) != "OK" {
			c.t.Fatalf("EACK answered %s", v)
		}
		c.acks--
		if v, err = c.read(timeout); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return resp3.Value{}, false
			}
			c.t.Fatalf("reading push: %v", err)
		}
	}
	if v.Type != resp3.Push {
		c.t.Fatalf("expected a push frame, got %s", v)
	}
	return v, true
}

// closedByServer reports whether the server closed the connection (or
// answers nothing) within timeout, after draining any error replies.
func (c *conn) closedByServer(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		_, err := c.read(time.Until(deadline))
		if err == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return false
		}
		return true
	}
	return false
}

// field is an expected key of a reply map, with its frame type.
type field struct {
	key string
	typ resp3.Type
}

// expectMap checks that v is a map with exactly these keys, in this order,
// with these value types and key frame type.
func expectMap(t testing.TB, what string, v resp3.Value, keyType resp3.Type, fields []field) {
	t.Helper()
	if v.Type != resp3.Map {
		t.Fatalf("%s: got %s %s, want a map", what, v.Type, v)
	}
	if v.Len() != len(fields) {
		t.Fatalf("%s: %d entries, want %d: %s", what, v.Len(), len(fields), v)
	}
	for i, f := range fields {
		k, val := v.Elems[2*i], v.Elems[2*i+1]
		if string(k.Str) != f.key || k.Type != keyType {
			t.Fatalf("%s: entry %d has key %s (%s), want %q (%s)", what, i, k, k.Type, f.key, keyType)
		}
		if val.Type != f.typ {
			t.Fatalf("%s: %s is a %s (%s), want a %s", what, f.key, val.Type, val, f.typ)
		}
	}
}

func get(t testing.TB, v resp3.Value, key string) resp3.Value {
	t.Helper()
	f, ok := v.MapGet(key)
	if !ok {
		t.Fatalf("no %q in %s", key, v)
	}
	return f
}

// expectError checks that v is a simple error starting with prefix.
func expectError(t testing.TB, v resp3.Value, prefix string) {
	t.Helper()
	if v.Type != resp3.SimpleError {
		t.Fatalf("got %s %s, want an error starting %q", v.Type, v, prefix)
	}
	if !strings.HasPrefix(string(v.Str), prefix) {
		t.Fatalf("error %q does not start with %q", v.Str, prefix)
	}
}

// expectErrorText checks that v is exactly this simple error.
func expectErrorText(t testing.TB, v resp3.Value, text string) {
	t.Helper()
	if v.Type != resp3.SimpleError || string(v.Str) != text {
		t.Fatalf("got %s %s, want error %q", v.Type, v, text)
	}
}

func expectSimple(t testing.TB, v resp3.Value, s string) {
	t.Helper()
	if v.Type != resp3.SimpleString || string(v.Str) != s {
		t.Fatalf("got %s %s, want +%s", v.Type, v, s)
	}
}

func expectInt(t testing.TB, what string, v resp3.Value, n int64) {
	t.Helper()
	if v.Type != resp3.Integer || v.Int != n {
		t.Fatalf("%s: got %s %s, want :%d", what, v.Type, v, n)
	}
}

func expectNull(t testing.TB, what string, v resp3.Value) {
	t.Helper()
	if v.Type != resp3.Null {
		t.Fatalf("%s: got %s %s, want null", what, v.Type, v)
	}
}
