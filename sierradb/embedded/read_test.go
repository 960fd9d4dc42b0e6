package embedded_test

import (
	"strconv"
	"testing"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

var scanFields = []field{{"has_more", S, resp3.Boolean}, {"events", S, resp3.Array}}

// versions returns the stream_version (or partition_sequence) of each event
// of a scan reply and its has_more.
func scanResult(t testing.TB, v resp3.Value, key string) ([]int64, bool) {
	t.Helper()
	wantMapShape(t, v, scanFields)
	var out []int64
	for _, e := range get(t, v, "events").Elems {
		wantMapShape(t, e, eventFields)
		out = append(out, getInt(t, e, key))
	}
	return out, get(t, v, "has_more").Bool
}

func TestEget(t *testing.T) {
	srv := embedded.RunT(t)
	c := dial(t, srv)
	v := c.do("EAPPEND", "s", "e", "EXPECTED_VERSION", "empty", "PAYLOAD", []byte{0, 1, 2, '\r', '\n'})
	id := getStr(t, v, "event_id")
	e := c.do("EGET", id)
	wantMapShape(t, e, eventFields)
	if getStr(t, e, "event_id") != id || getStr(t, e, "stream_id") != "s" || getStr(t, e, "payload") != "\x00\x01\x02\r\n" ||
		getInt(t, e, "partition_id") != getInt(t, v, "partition_id") || getStr(t, e, "metadata") != "" {
		t.Fatalf("EGET: %s", e)
	}
	// Other UUID forms find it too.
	wantMapShape(t, c.do("EGET", "{"+id+"}"), eventFields)
	wantNull(t, c.do("EGET", sierradb.NewEventID(uuid.New()).String()))
	wantError(t, c.do("EGET", "not-a-uuid"), "INVALIDARG invalid event id")
	wantErrorPrefix(t, c.do("EGET"), "INVALIDARG ")
}

func TestEscan(t *testing.T) {
	srv := embedded.RunT(t)
	c := dial(t, srv)
	appendN(t, c, "s", 0, 10)
	tests := []struct {
		name    string
		args    []any
		want    []int64
		hasMore bool
	}{
		{"all", []any{"-", "+"}, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, false},
		{"inclusive both ends", []any{"2", "4"}, []int64{2, 3, 4}, true},
		{"end at latest", []any{"7", "9"}, []int64{7, 8, 9}, false},
		{"end past latest", []any{"7", "100"}, []int64{7, 8, 9}, false},
		{"count reached, more in range", []any{"-", "+", "COUNT", "3"}, []int64{0, 1, 2}, true},
		{"count reached exactly at the end", []any{"7", "+", "COUNT", "3"}, []int64{7, 8, 9}, false},
		{"count reached at end bound", []any{"0", "2", "COUNT", "3"}, []int64{0, 1, 2}, true},
		{"start past latest", []any{"10", "+"}, nil, false},
		{"single", []any{"5", "5"}, []int64{5}, true},
		{"count zero", []any{"-", "+", "COUNT", "0"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := c.in(t)
			got, more := scanResult(t, c.do(append([]any{"ESCAN", "s"}, tt.args...)...), "stream_version")
			if !equalInts(got, tt.want) || more != tt.hasMore {
				t.Fatalf("got %v has_more=%v, want %v has_more=%v", got, more, tt.want, tt.hasMore)
			}
		})
	}
	// Paginating with has_more visits every event once.
	var all []int64
	for from := 0; ; {
		got, more := scanResult(t, c.do("ESCAN", "s", strconv.Itoa(from), "+", "COUNT", "4"), "stream_version")
		all = append(all, got...)
		if !more || len(got) == 0 {
			break
		}
		from = int(got[len(got)-1]) + 1
	}
	if len(all) != 10 {
		t.Fatalf("pagination read %v", all)
	}
	// Default COUNT is 100.
	appendN(t, c, "big", 0, 150)
	got, more := scanResult(t, c.do("ESCAN", "big", "-", "+"), "stream_version")
	if len(got) != 100 || !more {
		t.Fatalf("default COUNT: %d events, has_more=%v", len(got), more)
	}
	// Unknown stream, and a key that does not match the stream's.
	for _, args := range [][]any{{"ESCAN", "nope", "-", "+"}, {"ESCAN", "s", "-", "+", "PARTITION_KEY", uuid.NewString()}} {
		got, more := scanResult(t, c.do(args...), "stream_version")
		if len(got) != 0 || more {
			t.Fatalf("%v: %v has_more=%v", args, got, more)
		}
	}
	// Explicit default key works; options in any order.
	got, _ = scanResult(t, c.do("ESCAN", "s", "-", "+", "COUNT", "2", "PARTITION_KEY", sierradb.StreamPartitionKey("s").String()), "stream_version")
	if len(got) != 2 {
		t.Fatalf("ESCAN with key: %v", got)
	}
	errs := []struct {
		args []any
		want string
	}{
		{[]any{"ESCAN", "s", "+", "+"}, "INVALIDARG start version cannot be '+'"},
		{[]any{"ESCAN", "s", "-", "-"}, "INVALIDARG end version cannot be '-'"},
		{[]any{"ESCAN", "s", "-"}, "INVALIDARG "},
		{[]any{"ESCAN", "s"}, "INVALIDARG "},
		{[]any{"ESCAN", "s", "x", "+"}, "INVALIDARG "},
		{[]any{"ESCAN", "s", "-", "+", "COUNT", "1", "COUNT", "2"}, "INVALIDARG count already specified"},
		{[]any{"ESCAN", "s", "-", "+", "PARTITION_KEY", uuid.NewString(), "PARTITION_KEY", uuid.NewString()}, "INVALIDARG partition key already specified"},
		{[]any{"ESCAN", "s", "-", "+", "COUNT", "-1"}, "INVALIDARG "},
	}
	for _, e := range errs {
		v := c.do(e.args...)
		if e.want[len(e.want)-1] == ' ' {
			wantErrorPrefix(t, v, e.want)
		} else {
			wantError(t, v, e.want)
		}
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestEsver(t *testing.T) {
	srv := embedded.RunT(t)
	c := dial(t, srv)
	wantNull(t, c.do("ESVER", "s"))
	appendN(t, c, "s", 0, 3)
	wantInt(t, c.do("ESVER", "s"), 2)
	wantInt(t, c.do("esver", "s", "partition_key", sierradb.StreamPartitionKey("s").String()), 2)
	wantNull(t, c.do("ESVER", "s", "PARTITION_KEY", uuid.NewString()))
	wantError(t, c.do("ESVER", "s", "PARTITION_KEY", uuid.NewString(), "PARTITION_KEY", uuid.NewString()), "INVALIDARG unexpected string: expected end of input")
	wantErrorPrefix(t, c.do("ESVER"), "INVALIDARG ")
}

func TestEpscanAndEpseq(t *testing.T) {
	srv := embedded.RunT(t, embedded.Config{PartitionCount: 4})
	c := dial(t, srv)
	key := uuid.MustParse("550e8400-e29b-41d4-a716-446655440000")
	pid := int(sierradb.PartitionID(key, 4)) // 40025 % 4 = 1
	wantNull(t, c.do("EPSEQ", strconv.Itoa(pid)))
	got, more := scanResult(t, c.do("EPSCAN", strconv.Itoa(pid), "-", "+"), "partition_sequence")
	if len(got) != 0 || more {
		t.Fatalf("empty partition: %v %v", got, more)
	}
	for i := range 6 {
		exp := "empty"
		if i > 0 {
			exp = strconv.Itoa(i - 1)
		}
		c.do("EAPPEND", "s", "e", "PARTITION_KEY", key.String(), "EXPECTED_VERSION", exp)
	}
	wantInt(t, c.do("EPSEQ", strconv.Itoa(pid)), 5)
	wantInt(t, c.do("EPSEQ", pid), 5)
	wantInt(t, c.do("EPSEQ", key.String()), 5)
	tests := []struct {
		name    string
		args    []any
		want    []int64
		hasMore bool
	}{
		{"all by id", []any{strconv.Itoa(pid), "-", "+"}, []int64{0, 1, 2, 3, 4, 5}, false},
		{"all by key", []any{key.String(), "-", "+"}, []int64{0, 1, 2, 3, 4, 5}, false},
		{"inclusive end", []any{pid, "0", "0"}, []int64{0}, true},
		{"range", []any{pid, "2", "3"}, []int64{2, 3}, true},
		{"end at latest", []any{pid, "4", "5"}, []int64{4, 5}, false},
		{"count", []any{pid, "-", "+", "COUNT", "2"}, []int64{0, 1}, true},
		{"start past latest", []any{pid, "6", "+"}, nil, false},
		{"count zero", []any{pid, "1", "+", "COUNT", "0"}, nil, true},
		{"start after end", []any{pid, "3", "1"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := c.in(t)
			got, more := scanResult(t, c.do(append([]any{"EPSCAN"}, tt.args...)...), "partition_sequence")
			if !equalInts(got, tt.want) || more != tt.hasMore {
				t.Fatalf("got %v has_more=%v, want %v has_more=%v", got, more, tt.want, tt.hasMore)
			}
		})
	}
	errs := []struct {
		args []any
		want string
	}{
		{[]any{"EPSCAN", "4", "-", "+"}, "CLUSTERDOWN partition unavailable"},
		{[]any{"EPSEQ", "65535"}, "CLUSTERDOWN partition unavailable"},
		{[]any{"EPSEQ", "65536"}, "INVALIDARG "},
		{[]any{"EPSEQ", "x"}, "INVALIDARG "},
		{[]any{"EPSCAN", "0", "+", "+"}, "INVALIDARG start sequence cannot be '+'"},
		{[]any{"EPSCAN", "0", "-", "-"}, "INVALIDARG end sequence cannot be '-'"},
		{[]any{"EPSCAN", "0", "-", "+", "COUNT", "1", "COUNT", "1"}, "INVALIDARG count already specified"},
		{[]any{"EPSCAN", "0", "-"}, "INVALIDARG "},
	}
	for _, e := range errs {
		v := c.do(e.args...)
		if e.want[len(e.want)-1] == ' ' {
			wantErrorPrefix(t, v, e.want)
		} else {
			wantError(t, v, e.want)
		}
	}
}
