package embedded_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

func TestPing(t *testing.T) {
	srv := embedded.RunT(t)
	c := dial(t, srv)
	wantSimple(t, c.do("PING"), "PONG")
	wantSimple(t, c.do("ping"), "PONG")
	wantSimple(t, c.do(simple("PiNg")), "PONG")
	wantErrorPrefix(t, c.do("PING", "hello"), "INVALIDARG ")
}

func TestHello(t *testing.T) {
	srv := embedded.RunT(t, embedded.Config{PartitionCount: 8})
	c := dial(t, srv)
	for _, version := range []any{"3", 3, simple("3"), resp3.Value{Type: resp3.BigNumber, Str: []byte("3")}} {
		v := c.do("HELLO", version)
		wantMapShape(t, v, []field{
			{"server", B, B},
			{"version", B, B},
			{"peer_id", B, B},
			{"num_partitions", B, I},
		})
		if getStr(t, v, "server") != "sierradb" || getStr(t, v, "version") != "0.3.1" || getInt(t, v, "num_partitions") != 8 {
			t.Fatalf("HELLO: %s", v)
		}
		if id := getStr(t, v, "peer_id"); !strings.HasPrefix(id, "12D3KooW") || len(id) != 52 {
			t.Fatalf("peer_id %q does not look like a libp2p peer id", id)
		}
	}
	wantError(t, c.do("HELLO", "2"), "unsupported version 2, only 3 is supported")
	wantErrorPrefix(t, c.do("HELLO"), "INVALIDARG ")
	wantErrorPrefix(t, c.do("HELLO", "3", "AUTH", "u", "p"), "INVALIDARG ")
	wantErrorPrefix(t, c.do("HELLO", "3", "SETNAME", "x"), "INVALIDARG ")
	wantErrorPrefix(t, c.do("HELLO", "three"), "INVALIDARG ")
}

func TestInfoCache(t *testing.T) {
	srv := embedded.RunT(t, embedded.Config{RelaxedVersioning: true})
	c := dial(t, srv)
	c.do("EAPPEND", "s", "e", "PAYLOAD", strings.Repeat("x", 1000))
	c.do("ESCAN", "s", "-", "+")
	c.do("EGET", "00000000-0000-0000-0000-000000000000")
	v := c.do("INFO", "cache")
	wantMapShape(t, v, []field{
		{"hits", B, I},
		{"misses", B, I},
		{"hit_ratio", B, resp3.Double},
		{"entries", B, I},
		{"memory_bytes", B, I},
		{"max_bytes", B, I},
		{"block_size_bytes", B, I},
		{"evictions", B, I},
	})
	if getInt(t, v, "hits") != 1 || getInt(t, v, "misses") != 1 || get(t, v, "hit_ratio").Float != 0.5 {
		t.Fatalf("INFO CACHE counters: %s", v)
	}
	if getInt(t, v, "block_size_bytes") != 65536 || getInt(t, v, "max_bytes") != 256<<20 ||
		getInt(t, v, "memory_bytes") < 1000 || getInt(t, v, "entries") != 1 {
		t.Fatalf("INFO CACHE sizes: %s", v)
	}
	wantErrorPrefix(t, c.do("INFO"), "INVALIDARG ")
	wantErrorPrefix(t, c.do("INFO", "server"), "INVALIDARG ")
	wantErrorPrefix(t, c.do("INFO", "CACHE", "x"), "INVALIDARG ")
}

func TestFraming(t *testing.T) {
	srv := embedded.RunT(t)
	c := dial(t, srv)
	tests := []struct {
		name string
		raw  string
		want string
	}{
		{"simple string frame", "+PING\r\n", "expected array command"},
		{"integer frame", ":1\r\n", "expected array command"},
		{"map frame", "%1\r\n+a\r\n+b\r\n", "expected array command"},
		{"empty array", "*0\r\n", "empty command"},
		{"integer name", "*1\r\n:5\r\n", "INVALIDARG invalid type for command name"},
		{"array name", "*1\r\n*1\r\n+PING\r\n", "INVALIDARG invalid type for command name"},
		{"null name", "*1\r\n_\r\n", "INVALIDARG invalid type for command name"},
		{"unknown command", "*2\r\n$7\r\nflushdb\r\n$1\r\nx\r\n", "INVALIDARG unknown command 'FLUSHDB'"},
		{"unsupported redis command", "*1\r\n$4\r\nQUIT\r\n", "INVALIDARG unknown command 'QUIT'"},
		{"verbatim name", "*1\r\n=8\r\ntxt:ping\r\n", ""},
		{"big number name", "*1\r\n(12\r\n", "INVALIDARG unknown command '12'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := c.in(t)
			c.sendRaw(tt.raw)
			v := c.read()
			if tt.want == "" {
				wantSimple(t, v, "PONG")
				return
			}
			wantError(t, v, tt.want)
		})
	}
}

func TestPipelining(t *testing.T) {
	srv := embedded.RunT(t)
	c := dial(t, srv)
	var b strings.Builder
	const n = 200
	for i := range n {
		if i%2 == 0 {
			b.WriteString("*1\r\n$4\r\nPING\r\n")
		} else {
			b.WriteString("*2\r\n$5\r\nESVER\r\n$1\r\ns\r\n")
		}
	}
	c.sendRaw(b.String())
	for i := range n {
		v := c.read()
		if i%2 == 0 {
			wantSimple(t, v, "PONG")
		} else {
			wantNull(t, v)
		}
	}
}

func TestTrailingArguments(t *testing.T) {
	srv := embedded.RunT(t)
	c := dial(t, srv)
	const id = "0190b6a1-1c2e-7c6f-8a00-000000000000"
	for _, cmd := range [][]any{
		{"PING", "x"},
		{"EGET", id, "x"},
		{"ESVER", "s", "x"},
		{"ESCAN", "s", "-", "+", "x"},
		{"ESCAN", "s", "-", "+", "COUNT", "1", "x"},
		{"EPSCAN", "0", "-", "+", "x"},
		{"EPSEQ", "0", "x"},
		{"EACK", id, "1", "x"},
		{"EAPPEND", "s", "e", "EXPECTED_VERSION", "empty", "x"},
		{"INFO", "CACHE", "x"},
		{"HELLO", "3", "x"},
		{"EPSUB", "*", "WINDOW", "5", "x"},
		{"ESUB", "s", "WINDOW", "5", "x"},
	} {
		wantErrorPrefix(t, c.do(cmd...), "INVALIDARG ")
	}
	// Nothing was written or subscribed.
	wantNull(t, c.do("ESVER", "s"))
	if srv.SubscriptionCount() != 0 {
		t.Fatalf("%d subscriptions", srv.SubscriptionCount())
	}
}

func TestArgumentTypes(t *testing.T) {
	srv := embedded.RunT(t)
	c := dial(t, srv)
	// Strings as simple and verbatim strings; numbers as integers, big
	// numbers and digit strings; keywords in any case.
	verbatim := resp3.Value{Type: resp3.Verbatim, Format: "txt", Str: []byte("s")}
	wantMapShape(t, c.do(simple("eappend"), verbatim, simple("e"), simple("expected_version"), "EMPTY"), eaappendFields)
	wantMapShape(t, c.do("EAPPEND", "s", "e", "Expected_Version", 0), eaappendFields)
	big := resp3.Value{Type: resp3.BigNumber, Str: []byte("1")}
	wantMapShape(t, c.do("EAPPEND", "s", "e", "EXPECTED_VERSION", big), eaappendFields)
	wantInt(t, c.do("ESVER", verbatim), 2)
	v := c.do("ESCAN", "s", 1, big, "count", resp3.Value{Type: resp3.BigNumber, Str: []byte("5")})
	if ev := get(t, v, "events"); ev.Len() != 1 {
		t.Fatalf("ESCAN: %s", v)
	}
	// A negative integer is not a number argument.
	wantErrorPrefix(t, c.do("ESCAN", "s", -1, "+"), "INVALIDARG ")
	// A number is not a stream id.
	wantErrorPrefix(t, c.do("ESVER", 5), "INVALIDARG ")
	// Non-UTF-8 stream ids are rejected like the real server's string parser.
	wantErrorPrefix(t, c.do("ESVER", "\xff"), "INVALIDARG ")
}

var eaappendFields = []field{
	{"event_id", S, S},
	{"partition_key", S, S},
	{"partition_id", S, I},
	{"partition_sequence", S, I},
	{"stream_version", S, I},
	{"timestamp", S, I},
}

func TestSetErrorAndFailNext(t *testing.T) {
	srv := embedded.RunT(t)
	c := dial(t, srv)
	srv.SetError("TRYAGAIN loading")
	wantError(t, c.do("PING"), "TRYAGAIN loading")
	wantError(t, c.do("EAPPEND", "s", "e", "EXPECTED_VERSION", "empty"), "TRYAGAIN loading")
	srv.SetError("")
	wantSimple(t, c.do("PING"), "PONG")
	wantNull(t, c.do("ESVER", "s"))

	srv.FailNext("eappend", "TIMEOUT write operation timed out")
	srv.FailNext("EAPPEND", "CLUSTERDOWN no available partitions")
	wantSimple(t, c.do("PING"), "PONG") // other commands are not affected
	wantError(t, c.do("EAPPEND", "s", "e", "EXPECTED_VERSION", "empty"), "TIMEOUT write operation timed out")
	wantError(t, c.do("EAPPEND", "s", "e", "EXPECTED_VERSION", "empty"), "CLUSTERDOWN no available partitions")
	wantMapShape(t, c.do("EAPPEND", "s", "e", "EXPECTED_VERSION", "empty"), eaappendFields)
}

func TestDropConnections(t *testing.T) {
	srv := embedded.RunT(t)
	c1, c2 := dial(t, srv), dial(t, srv)
	wantSimple(t, c1.do("PING"), "PONG")
	wantSimple(t, c2.do("PING"), "PONG")
	if n := srv.ConnectionCount(); n != 2 {
		t.Fatalf("ConnectionCount = %d, want 2", n)
	}
	c1.send("EPSUB", "*")
	c1.read()
	eventually(t, "a running subscription", func() bool { return srv.SubscriptionCount() == 1 })
	srv.DropConnections()
	c1.expectClosed()
	c2.expectClosed()
	eventually(t, "no connections", func() bool { return srv.ConnectionCount() == 0 })
	eventually(t, "no subscriptions", func() bool { return srv.SubscriptionCount() == 0 })
	c3 := dial(t, srv)
	wantSimple(t, c3.do("PING"), "PONG")
}

func TestCloseIsIdempotent(t *testing.T) {
	srv, err := embedded.Run()
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, srv)
	c.send("EPSUB", "*")
	c.read()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	c.expectClosed()
	if n := srv.SubscriptionCount(); n != 0 {
		t.Fatalf("%d subscriptions after Close", n)
	}
	if _, err := srv.AppendStream("s", "e", nil); !errors.Is(err, embedded.ErrClosed) {
		t.Fatalf("AppendStream after Close: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	file := t.TempDir() + "/file"
	if err := writeFile(file, "x"); err != nil {
		t.Fatal(err)
	}
	err := embedded.Config{Addr: "no-port", Dir: file}.Validate()
	if err == nil || !strings.Contains(err.Error(), "Addr") || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("Validate = %v, want both problems", err)
	}
	if err := (embedded.Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	if _, err := embedded.Start(embedded.Config{Addr: "no-port"}); err == nil {
		t.Fatal("Start accepted an invalid Config")
	}
}

// fakeT records what RunT does with a Tester.
type fakeT struct {
	fatal    string
	cleanups []func()
}

func (f *fakeT) Helper()                        {}
func (f *fakeT) Fatalf(format string, a ...any) { f.fatal = format }
func (f *fakeT) Cleanup(fn func())              { f.cleanups = append(f.cleanups, fn) }

func TestRunT(t *testing.T) {
	ft := &fakeT{}
	srv := embedded.RunT(ft, embedded.Config{PartitionCount: 4})
	if srv == nil || ft.fatal != "" || len(ft.cleanups) != 1 || srv.PartitionCount() != 4 {
		t.Fatalf("RunT: srv=%v fatal=%q cleanups=%d", srv, ft.fatal, len(ft.cleanups))
	}
	ft.cleanups[0]()
	if _, err := srv.AppendStream("s", "e", nil); !errors.Is(err, embedded.ErrClosed) {
		t.Fatalf("the cleanup did not close the server: %v", err)
	}
	ft = &fakeT{}
	if srv := embedded.RunT(ft, embedded.Config{}, embedded.Config{}); srv != nil || ft.fatal == "" {
		t.Fatal("RunT accepted two Configs")
	}
}
