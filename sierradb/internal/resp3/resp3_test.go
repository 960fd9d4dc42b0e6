package resp3_test

import (
	"bytes"
	"errors"
	"io"
	"math"
	"strings"
	"testing"

	"github.com/esmill/esmill/sierradb/internal/resp3"
)

func read(t *testing.T, in string) (resp3.Value, error) {
	t.Helper()
	return resp3.NewReader(strings.NewReader(in)).ReadValue()
}

func TestReadEveryType(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"simple string", "+OK\r\n", `"OK"`},
		{"simple error", "-WRONGVER nope\r\n", `ERR("WRONGVER nope")`},
		{"blob", "$5\r\nhe\r\no\r\n", `"he\r\no"`},
		{"empty blob", "$0\r\n\r\n", `""`},
		{"resp2 null blob", "$-1\r\n", "null"},
		{"resp2 null array", "*-1\r\n", "null"},
		{"verbatim", "=9\r\ntxt:hello\r\n", `"hello"`},
		{"integer", ":-42\r\n", "-42"},
		{"double", ",1.5\r\n", "1.5"},
		{"double inf", ",inf\r\n", "+Inf"},
		{"bool true", "#t\r\n", "true"},
		{"bool false", "#f\r\n", "false"},
		{"null", "_\r\n", "null"},
		{"big number", "(3492890328409238509324850943850943825024385\r\n", `"3492890328409238509324850943850943825024385"`},
		{"blob error", "!5\r\nERR x\r\n", `ERR("ERR x")`},
		{"array", "*2\r\n:1\r\n+a\r\n", `*[1, "a"]`},
		{"set", "~1\r\n:1\r\n", `~[1]`},
		{"push", ">2\r\n+message\r\n:3\r\n", `>[` + `"message", 3]`},
		{"map", "%1\r\n+k\r\n#t\r\n", `{"k": true}`},
		{"attribute skipped", "|1\r\n+ttl\r\n:3\r\n+value\r\n", `"value"`},
		{"nested", "*1\r\n%1\r\n+a\r\n*0\r\n", `*[{"a": *[]}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := read(t, tt.in)
			if err != nil {
				t.Fatalf("ReadValue: %v", err)
			}
			if got := v.String(); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	values := []resp3.Value{
		{Type: resp3.SimpleString, Str: []byte("PONG")},
		{Type: resp3.SimpleError, Str: []byte("INVALIDARG bad")},
		{Type: resp3.BlobString, Str: []byte("bin\x00\r\nary")},
		{Type: resp3.BlobError, Str: []byte("SYNTAX x")},
		{Type: resp3.Verbatim, Format: "mkd", Str: []byte("# hi")},
		{Type: resp3.Integer, Int: math.MinInt64},
		{Type: resp3.Double, Float: 0.125},
		{Type: resp3.Boolean, Bool: true},
		{Type: resp3.Null},
		{Type: resp3.BigNumber, Str: []byte("-123456789012345678901234567890")},
		{Type: resp3.Push, Elems: []resp3.Value{
			{Type: resp3.SimpleString, Str: []byte("message")},
			{Type: resp3.Map, Elems: []resp3.Value{
				{Type: resp3.SimpleString, Str: []byte("k")},
				{Type: resp3.Set, Elems: []resp3.Value{{Type: resp3.Integer, Int: 7}}},
			}},
		}},
	}
	var buf bytes.Buffer
	w := resp3.NewWriter(&buf)
	for _, v := range values {
		w.WriteValue(v)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r := resp3.NewReader(&buf)
	for i, want := range values {
		got, err := r.ReadValue()
		if err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		if got.String() != want.String() || got.Type != want.Type {
			t.Fatalf("value %d: got %s (%s), want %s (%s)", i, got, got.Type, want, want.Type)
		}
	}
	if _, err := r.ReadValue(); !errors.Is(err, io.EOF) {
		t.Fatalf("after last frame: got %v, want io.EOF", err)
	}
}

func TestWriterKeepsLinesFramed(t *testing.T) {
	var buf bytes.Buffer
	w := resp3.NewWriter(&buf)
	w.WriteError("bad stream 'a\r\nb'")
	w.WriteSimpleString("x\ny")
	w.Flush()
	r := resp3.NewReader(&buf)
	for _, want := range []string{"bad stream 'a  b'", "x y"} {
		v, err := r.ReadValue()
		if err != nil {
			t.Fatal(err)
		}
		if string(v.Str) != want {
			t.Fatalf("got %q, want %q", v.Str, want)
		}
	}
}

func TestCommand(t *testing.T) {
	var buf bytes.Buffer
	w := resp3.NewWriter(&buf)
	w.WriteCommand("EAPPEND", "s-1", "Ev")
	w.Flush()
	if got, want := buf.String(), "*3\r\n$7\r\nEAPPEND\r\n$3\r\ns-1\r\n$2\r\nEv\r\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestHostileInput(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr error
	}{
		{"unknown type", "?x\r\n", resp3.ErrProtocol},
		{"no crlf", "+OK\n", resp3.ErrProtocol},
		{"empty header", "\r\n", resp3.ErrProtocol},
		{"bad integer", ":12a\r\n", resp3.ErrProtocol},
		{"bad bool", "#x\r\n", resp3.ErrProtocol},
		{"bad double", ",abc\r\n", resp3.ErrProtocol},
		{"null with payload", "_x\r\n", resp3.ErrProtocol},
		{"bad big number", "(12x\r\n", resp3.ErrProtocol},
		{"negative blob", "$-2\r\n", resp3.ErrProtocol},
		{"huge blob", "$99999999999999\r\n", resp3.ErrProtocol},
		{"huge array", "*99999999999\r\n", resp3.ErrProtocol},
		{"huge map", "%9223372036854775807\r\n", resp3.ErrProtocol},
		{"negative map", "%-1\r\n", resp3.ErrProtocol},
		{"blob without crlf", "$2\r\nabXY", resp3.ErrProtocol},
		{"verbatim without format", "=3\r\nabc\r\n", resp3.ErrProtocol},
		{"truncated blob", "$10\r\nabc", io.ErrUnexpectedEOF},
		{"truncated array", "*3\r\n:1\r\n", io.ErrUnexpectedEOF},
		{"truncated line", "+OK", io.ErrUnexpectedEOF},
		{"too deep", strings.Repeat("*1\r\n", 100) + ":1\r\n", resp3.ErrProtocol},
		{"long line", "+" + strings.Repeat("a", 70<<10) + "\r\n", resp3.ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := read(t, tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// A declared length that never arrives must not be allocated up front.
func TestHugeDeclaredBlobDoesNotAllocate(t *testing.T) {
	in := "$536870000\r\nshort"
	var before, after runtimeMem
	before.read()
	for range 5 {
		if _, err := read(t, in); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
		}
	}
	after.read()
	if grown := after.total - before.total; grown > 16<<20 {
		t.Fatalf("reading 5 truncated 512 MB blobs allocated %d bytes", grown)
	}
}

func TestLimits(t *testing.T) {
	r := resp3.NewReaderLimits(strings.NewReader("$11\r\nhello world\r\n"), resp3.Limits{MaxBlobLen: 10})
	if _, err := r.ReadValue(); !errors.Is(err, resp3.ErrProtocol) {
		t.Fatalf("got %v, want ErrProtocol", err)
	}
	r = resp3.NewReaderLimits(strings.NewReader("*3\r\n:1\r\n:2\r\n:3\r\n"), resp3.Limits{MaxElems: 2})
	if _, err := r.ReadValue(); !errors.Is(err, resp3.ErrProtocol) {
		t.Fatalf("got %v, want ErrProtocol", err)
	}
}

func TestMapGet(t *testing.T) {
	v, err := read(t, "%2\r\n+a\r\n:1\r\n$1\r\nb\r\n:2\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if b, ok := v.MapGet("b"); !ok || b.Int != 2 {
		t.Fatalf("MapGet(b) = %v, %v", b, ok)
	}
	if _, ok := v.MapGet("c"); ok {
		t.Fatal("MapGet(c) found a missing key")
	}
	if v.Len() != 2 {
		t.Fatalf("Len = %d", v.Len())
	}
}
