package embedded_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

func TestMalformedInputClosesOnlyThatConnection(t *testing.T) {
	srv := embedded.RunT(t)
	other := dial(t, srv)
	tests := []struct {
		name string
		raw  string
	}{
		{"garbage", "hello world\r\n"},
		{"inline command", "PING\r\n"},
		{"bad integer", ":12x\r\n"},
		{"bad array length", "*x\r\n"},
		{"negative blob length", "*1\r\n$-5\r\n"},
		{"oversize blob length", "*2\r\n$4\r\nPING\r\n$300000000\r\n"},
		{"oversize array length", "*2000000\r\n"},
		{"oversize map length", "%2000000\r\n"},
		{"deep nesting", strings.Repeat("*1\r\n", 100) + "+x\r\n"},
		{"blob without CRLF", "*1\r\n$4\r\nPINGxx"},
		{"line too long", "+" + strings.Repeat("x", 70<<10) + "\r\n"},
		{"bare LF", "*1\n"},
		{"bad boolean", "*1\r\n#x\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, srv)
			c.sendRaw(tt.raw)
			c.expectClosed()
			wantSimple(t, other.in(t).do("PING"), "PONG")
		})
	}
}

func TestTruncatedFrames(t *testing.T) {
	srv := embedded.RunT(t)
	other := dial(t, srv)

	// A partial frame waits for the rest without stalling anyone else.
	c := dial(t, srv)
	c.sendRaw("*2\r\n$5\r\nESVER\r\n$1")
	wantSimple(t, other.do("PING"), "PONG")
	c.sendRaw("\r\ns\r\n")
	wantNull(t, c.read())

	// A frame cut by the end of the connection closes it.
	c = dial(t, srv)
	c.sendRaw("*3\r\n$7\r\nEAPPEND\r\n$1\r\ns")
	c.nc.(interface{ CloseWrite() error }).CloseWrite()
	c.expectClosed()
	wantSimple(t, other.do("PING"), "PONG")
	wantNull(t, other.do("ESVER", "s"))
	eventually(t, "the cut connection to go", func() bool { return srv.ConnectionCount() == 2 })
}

func TestErrorRepliesKeepConnectionUsable(t *testing.T) {
	srv := embedded.RunT(t)
	c := dial(t, srv)
	for _, args := range [][]any{
		{"NOPE"},
		{"EAPPEND"},
		{"EGET", "a", "b"},
		{"ESCAN", arg(resp3.Value{Type: resp3.Array})},
		{"ESVER", resp3.Value{Type: resp3.Map}},
		{"EPSEQ", resp3.Value{Type: resp3.Boolean, Bool: true}},
		{"ESVER", resp3.Value{Type: resp3.Null}},
		{"ESVER", resp3.Value{Type: resp3.Double, Float: 1.5}},
	} {
		v := c.do(args...)
		if v.Type != resp3.SimpleError {
			t.Fatalf("%v: %s", args, v)
		}
	}
	wantSimple(t, c.do("PING"), "PONG")
}

func TestLargeValidFrame(t *testing.T) {
	srv := embedded.RunT(t)
	c := dial(t, srv)
	payload := strings.Repeat("p", 4<<20)
	v := c.do("EAPPEND", "s", "e", "EXPECTED_VERSION", "empty", "PAYLOAD", payload)
	if v.Type != resp3.Map {
		t.Fatalf("EAPPEND: %s", v)
	}
	e := c.do("EGET", getStr(t, v, "event_id"))
	if getStr(t, e, "payload") != payload {
		t.Fatal("payload changed")
	}
}

func TestRandomBytes(t *testing.T) {
	srv := embedded.RunT(t)
	r := rand.New(rand.NewPCG(1, 2))
	prefixes := []string{"", "*", "*3\r\n", "*2\r\n$7\r\nEAPPEND\r\n", "%", ">", "$", "*1\r\n"}
	for i := range 200 {
		c := dial(t, srv)
		b := []byte(prefixes[i%len(prefixes)])
		for range r.IntN(512) {
			b = append(b, byte(r.IntN(256)))
		}
		c.sendRaw(string(b))
		c.nc.Close()
	}
	c := dial(t, srv)
	wantSimple(t, c.do("PING"), "PONG")
	eventually(t, "closed connections to go", func() bool { return srv.ConnectionCount() == 1 })
}
