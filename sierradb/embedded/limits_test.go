package embedded_test

import (
	"strings"
	"testing"
	"time"

	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

func TestMaxConnections(t *testing.T) {
	srv := embedded.RunT(t, embedded.Config{MaxConnections: 3})
	var cs []*client
	for range 3 {
		c := dial(t, srv)
		wantSimple(t, c.do("PING"), "PONG")
		cs = append(cs, c)
	}
	extra := dial(t, srv)
	wantError(t, extra.readFrame(),
		"TRYAGAIN too many connections: the server allows 3 (MaxConnections); close idle connections or raise the limit")
	extra.expectClosed()
	// The others are unaffected, and a closed one makes room.
	wantSimple(t, cs[1].do("PING"), "PONG")
	cs[0].nc.Close()
	eventually(t, "the closed connection to go", func() bool { return srv.ConnectionCount() == 2 })
	wantSimple(t, dial(t, srv).do("PING"), "PONG")
}

func TestMaxSubscriptionsPerConn(t *testing.T) {
	srv := embedded.RunT(t, embedded.Config{MaxSubscriptionsPerConn: 2})
	c := dial(t, srv)
	for range 2 {
		if v := c.do("EPSUB", "*"); v.Type != resp3.SimpleString {
			t.Fatalf("EPSUB: %s", v)
		}
	}
	want := "INVALIDARG too many subscriptions on this connection: at most 2 (MaxSubscriptionsPerConn); open another connection or raise the limit"
	wantError(t, c.do("EPSUB", "*"), want)
	wantError(t, c.do("ESUB", "s"), want)
	wantSimple(t, c.do("PING"), "PONG")
	if n := srv.SubscriptionCount(); n != 2 {
		t.Fatalf("SubscriptionCount = %d, want 2", n)
	}
	// Another connection has its own allowance.
	if v := dial(t, srv).do("ESUB", "s"); v.Type != resp3.SimpleString {
		t.Fatalf("ESUB on another connection: %s", v)
	}
}

// nullFrame is the start of an array of n nulls: 3 bytes each on the wire,
// about 100 bytes each once decoded.
func nullFrame(n int) string {
	return "*" + itoa(n) + "\r\n" + strings.Repeat("_\r\n", n)
}

func itoa(n int) string { return strings.TrimSpace(strings.Repeat(" ", 0) + fmtInt(n)) }

func fmtInt(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestMaxFrameBytes(t *testing.T) {
	srv := embedded.RunT(t, embedded.Config{MaxFrameBytes: 1 << 20, MaxTotalFrameBytes: 1 << 20})
	other := dial(t, srv)
	c := dial(t, srv)
	// 30,000 nulls: 90 KB on the wire, about 3 MB decoded.
	c.sendRaw(nullFrame(30_000))
	wantError(t, c.readFrame(),
		"INVALIDARG request too large: a request may take 1048576 bytes once decoded (MaxFrameBytes); send smaller requests or raise the limit")
	c.expectClosed()
	wantSimple(t, other.do("PING"), "PONG")
	// A request within the budget passes.
	v := other.do("EAPPEND", "s", "e", "EXPECTED_VERSION", "empty", "PAYLOAD", strings.Repeat("p", 900<<10))
	if v.Type != resp3.Map {
		t.Fatalf("EAPPEND of 900 KiB: %s", v)
	}
}

func TestMaxTotalFrameBytes(t *testing.T) {
	srv := embedded.RunT(t, embedded.Config{MaxFrameBytes: 3 << 20, MaxTotalFrameBytes: 4 << 20})
	// Two clients each start a request of 2.5 MiB and stop before its end.
	head := "*6\r\n$7\r\nEAPPEND\r\n$1\r\ns\r\n$1\r\ne\r\n$7\r\nPAYLOAD\r\n$" + itoa(5<<19) + "\r\n"
	first := dial(t, srv)
	first.sendRaw(head + strings.Repeat("x", 5<<19-1000))
	eventually(t, "the first request to be read", func() bool { return embedded.FrameBudgetUsed(srv) >= 2<<20 })
	idle := dial(t, srv)
	second := dial(t, srv)
	second.sendRaw(head + strings.Repeat("x", 5<<19-1000))
	wantError(t, second.readFrame(),
		"TRYAGAIN server busy: the 4194304 bytes for requests in flight (MaxTotalFrameBytes) are in use; retry later")
	second.expectClosed()
	// Small requests still pass while the budget is taken.
	wantSimple(t, idle.do("PING"), "PONG")
	wantNull(t, dial(t, srv).do("ESVER", "s"))
}

func TestFrameTimeout(t *testing.T) {
	srv := embedded.RunT(t, embedded.Config{FrameTimeout: 300 * time.Millisecond})
	idle := dial(t, srv)
	wantSimple(t, idle.do("PING"), "PONG")
	stalled := dial(t, srv)
	stalled.sendRaw("*2\r\n$5\r\nESVER\r\n$1")
	start := time.Now()
	stalled.expectClosed()
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("unfinished request closed after %s, before FrameTimeout", d)
	}
	// The idle connection has been idle longer than FrameTimeout and is
	// still served.
	wantSimple(t, idle.do("PING"), "PONG")
}

func TestLimitConfigErrors(t *testing.T) {
	for _, cfg := range []embedded.Config{
		{MaxConnections: -1},
		{MaxFrameBytes: 10 << 20, MaxTotalFrameBytes: 1 << 20},
		{MaxTotalFrameBytes: 1 << 20},
		{FrameTimeout: -time.Second},
		{CacheBytes: -1},
	} {
		if err := cfg.Validate(); err == nil {
			t.Fatalf("Validate(%+v) accepted it", cfg)
		}
	}
}
