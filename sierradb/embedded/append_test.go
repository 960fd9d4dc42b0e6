package embedded_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

var fixedNow = time.UnixMilli(1_700_000_000_123)

func TestEappend(t *testing.T) {
	srv := embedded.RunT(t, embedded.Config{Now: func() time.Time { return fixedNow }})
	c := dial(t, srv)
	v := c.do("EAPPEND", "user-123", "Created", "EXPECTED_VERSION", "empty", "PAYLOAD", "{}", "METADATA", "m")
	wantMapShape(t, v, eaappendFields)
	key := sierradb.StreamPartitionKey("user-123")
	if getStr(t, v, "partition_key") != key.String() || getInt(t, v, "partition_id") != 21 ||
		getInt(t, v, "partition_sequence") != 0 || getInt(t, v, "stream_version") != 0 ||
		getInt(t, v, "timestamp") != fixedNow.UnixMilli() {
		t.Fatalf("EAPPEND: %s", v)
	}
	id := uuid.MustParse(getStr(t, v, "event_id"))
	ms := int64(id[0])<<40 | int64(id[1])<<32 | int64(id[2])<<24 | int64(id[3])<<16 | int64(id[4])<<8 | int64(id[5])
	if !sierradb.EventIDMatchesPartitionKey(id, key) || ms != fixedNow.UnixMilli() {
		t.Fatalf("generated event id %s", id)
	}

	// Same partition (order-456 maps to 21 too): the sequence goes on.
	v = c.do("EAPPEND", "order-456", "Placed", "EXPECTED_VERSION", "empty", "TIMESTAMP", "1600000000000")
	if getInt(t, v, "partition_sequence") != 1 || getInt(t, v, "stream_version") != 0 || getInt(t, v, "timestamp") != 1600000000000 {
		t.Fatalf("second EAPPEND: %s", v)
	}
	v = c.do("EAPPEND", "user-123", "Renamed", "EXPECTED_VERSION", "0", "EVENT_ID", sierradb.NewEventID(key).String())
	if getInt(t, v, "partition_sequence") != 2 || getInt(t, v, "stream_version") != 1 {
		t.Fatalf("third EAPPEND: %s", v)
	}

	// The stored event carries everything, with a single-event transaction
	// id (top bit of byte 8 set).
	e := c.do("EGET", getStr(t, v, "event_id"))
	wantMapShape(t, e, eventFields)
	tx := uuid.MustParse(getStr(t, e, "transaction_id"))
	if tx[8]&0x80 == 0 {
		t.Fatalf("single-event transaction id %s has the top bit of byte 8 clear", tx)
	}
	first := c.do("ESCAN", "user-123", "-", "+")
	ev := get(t, first, "events").Elems[0]
	if getStr(t, ev, "payload") != "{}" || getStr(t, ev, "metadata") != "m" || getStr(t, ev, "event_name") != "Created" {
		t.Fatalf("stored event: %s", ev)
	}
}

func TestEappendExplicitPartitionKey(t *testing.T) {
	srv := embedded.RunT(t)
	c := dial(t, srv)
	key := "550e8400-e29b-41d4-a716-446655440000"
	for _, form := range []string{key, "{" + key + "}", "urn:uuid:" + key, strings.ReplaceAll(key, "-", ""), " " + strings.ToUpper(key) + " "} {
		v := c.do("ESVER", "k", "PARTITION_KEY", form)
		if v.Type == resp3.SimpleError {
			t.Fatalf("partition key form %q: %s", form, v)
		}
	}
	v := c.do("EAPPEND", "k", "e", "PARTITION_KEY", key, "EXPECTED_VERSION", "empty")
	if getStr(t, v, "partition_key") != key || getInt(t, v, "partition_id") != 25 {
		t.Fatalf("EAPPEND with key: %s", v)
	}
	// Reads with the default key see nothing: the stream is keyed on the pair.
	wantNull(t, c.do("ESVER", "k"))
	wantInt(t, c.do("ESVER", "k", "PARTITION_KEY", key), 0)
}

func TestEappendErrors(t *testing.T) {
	srv := embedded.RunT(t, embedded.Config{Now: func() time.Time { return fixedNow }})
	c := dial(t, srv)
	c.do("EAPPEND", "s", "e", "EXPECTED_VERSION", "empty")
	skey := sierradb.StreamPartitionKey("s")
	otherKey := uuid.MustParse("550e8400-e29b-41d4-a716-446655440000")
	long := strings.Repeat("x", 65)
	tests := []struct {
		name string
		args []any
		want string
	}{
		{"missing expected version", []any{"EAPPEND", "t", "e"}, "INVALIDARG strict versioning mode rejects EXPECTED_VERSION any"},
		{"any", []any{"EAPPEND", "t", "e", "EXPECTED_VERSION", "any"}, "INVALIDARG strict versioning mode rejects EXPECTED_VERSION any"},
		{"exists", []any{"EAPPEND", "t", "e", "EXPECTED_VERSION", "EXISTS"}, "INVALIDARG strict versioning mode rejects EXPECTED_VERSION exists"},
		{"wrong version", []any{"EAPPEND", "s", "e", "EXPECTED_VERSION", "5"},
			"WRONGVER current stream version is 0 but expected 5 for partition key " + skey.String() + " and stream id s"},
		{"not empty", []any{"EAPPEND", "s", "e", "EXPECTED_VERSION", "empty"},
			"WRONGVER current stream version is 0 but expected empty for partition key " + skey.String() + " and stream id s"},
		{"empty stream", []any{"EAPPEND", "t", "e", "EXPECTED_VERSION", "0"},
			"WRONGVER current stream version is empty but expected 0 for partition key " + sierradb.StreamPartitionKey("t").String() + " and stream id t"},
		{"event id without hash", []any{"EAPPEND", "t", "e", "EXPECTED_VERSION", "empty", "EVENT_ID", sierradb.NewEventID(otherKey).String()},
			"the event id must embed the partition hash"},
		// An option whose value does not parse ends the options; the
		// request must then end, so it fails on the option's keyword.
		{"bad event id", []any{"EAPPEND", "t", "e", "EXPECTED_VERSION", "empty", "EVENT_ID", "nope"}, "INVALIDARG unexpected string: expected EVENT_ID, PARTITION_KEY, EXPECTED_VERSION, TIMESTAMP, PAYLOAD, METADATA or end of input"},
		{"bad partition key", []any{"EAPPEND", "t", "e", "EXPECTED_VERSION", "empty", "PARTITION_KEY", "nope"}, "INVALIDARG unexpected string: expected EVENT_ID, PARTITION_KEY, EXPECTED_VERSION, TIMESTAMP, PAYLOAD, METADATA or end of input"},
		{"nil event id", []any{"EAPPEND", "t", "e", "EXPECTED_VERSION", "empty", "EVENT_ID", uuid.Nil.String()},
			"the event id must embed the partition hash"},
		{"stream id too long", []any{"EAPPEND", long, "e", "EXPECTED_VERSION", "empty"},
			"INVALIDARG stream id must be between 1 and 64 characters in length, but got 65 for '" + long + "'"},
		{"empty stream id", []any{"EAPPEND", "", "e", "EXPECTED_VERSION", "empty"},
			"INVALIDARG stream id must be between 1 and 64 characters in length, but got 0 for ''"},
		{"stream id with NUL", []any{"EAPPEND", "a\x00b", "e", "EXPECTED_VERSION", "empty"}, "INVALIDARG stream id cannot contain null bytes"},
		{"event name too long", []any{"EAPPEND", "t", strings.Repeat("n", 256), "EXPECTED_VERSION", "empty"},
			"DBOPFAILED database operation failed: event name too long"},
		{"timestamp overflow", []any{"EAPPEND", "t", "e", "EXPECTED_VERSION", "empty", "TIMESTAMP", "18446744073710"},
			"INVALIDARG invalid timestamp format: expected milliseconds, got nanoseconds"},
		{"timestamp past 2^63 ns", []any{"EAPPEND", "t", "e", "EXPECTED_VERSION", "empty", "TIMESTAMP", "9223372036855"},
			"DBOPFAILED database operation failed: system time is incorrect"},
		{"partition key binding", []any{"EAPPEND", "s", "e", "EXPECTED_VERSION", "empty", "PARTITION_KEY", otherKey.String()},
			"DBOPFAILED database operation failed: partition key must be the same for all events in a stream: expected " +
				skey.String() + ", got " + otherKey.String()},
		{"repeated expected version", []any{"EAPPEND", "t", "e", "EXPECTED_VERSION", "empty", "EXPECTED_VERSION", "empty"}, "INVALIDARG expected version already specified"},
		{"repeat after exists", []any{"EAPPEND", "t", "e", "EXPECTED_VERSION", "exists", "EXPECTED_VERSION", "empty"}, "INVALIDARG expected version already specified"},
		{"repeated event id", []any{"EAPPEND", "t", "e", "EVENT_ID", uuid.NewString(), "EVENT_ID", uuid.NewString()}, "INVALIDARG event id already specified"},
		{"repeated partition key", []any{"EAPPEND", "t", "e", "PARTITION_KEY", uuid.NewString(), "PARTITION_KEY", uuid.NewString()}, "INVALIDARG partition key already specified"},
		{"repeated timestamp", []any{"EAPPEND", "t", "e", "TIMESTAMP", "1", "TIMESTAMP", "2"}, "INVALIDARG timestamp already specified"},
		{"repeated payload", []any{"EAPPEND", "t", "e", "PAYLOAD", "a", "PAYLOAD", "x"}, "INVALIDARG payload already specified"},
		{"repeated metadata", []any{"EAPPEND", "t", "e", "METADATA", "a", "metadata", "b"}, "INVALIDARG metadata already specified"},
		{"unknown option", []any{"EAPPEND", "t", "e", "EXPECTED_VERSION", "empty", "COLOR", "red"}, "INVALIDARG unexpected string: expected EVENT_ID, PARTITION_KEY, EXPECTED_VERSION, TIMESTAMP, PAYLOAD, METADATA or end of input"},
		{"option without value", []any{"EAPPEND", "t", "e", "EXPECTED_VERSION"}, "INVALIDARG unexpected string: expected EVENT_ID, PARTITION_KEY, EXPECTED_VERSION, TIMESTAMP, PAYLOAD, METADATA or end of input"},
		{"bad expected version", []any{"EAPPEND", "t", "e", "EXPECTED_VERSION", "latest"}, "INVALIDARG unexpected string: expected EVENT_ID, PARTITION_KEY, EXPECTED_VERSION, TIMESTAMP, PAYLOAD, METADATA or end of input"},
		{"number after the name", []any{"EAPPEND", "t", "e", 5},
			"INVALIDARG unexpected number: expected EVENT_ID, PARTITION_KEY, EXPECTED_VERSION, TIMESTAMP, PAYLOAD, METADATA or end of input"},
		{"missing event name", []any{"EAPPEND", "t"}, "INVALIDARG unexpected end of input: expected event name"},
		{"no arguments", []any{"EAPPEND"}, "INVALIDARG unexpected end of input: expected stream id"},
		{"stream id not UTF-8", []any{"EAPPEND", "\xff", "e"}, "INVALIDARG unexpected string: expected stream id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := c.in(t)
			v := c.do(tt.args...)
			if strings.HasSuffix(tt.want, " ") {
				wantErrorPrefix(t, v, tt.want)
				return
			}
			wantError(t, v, tt.want)
		})
	}
	// None of the failures wrote anything.
	wantNull(t, c.do("ESVER", "t"))
	wantInt(t, c.do("ESVER", "s"), 0)
	wantInt(t, c.do("EPSEQ", strconv.Itoa(int(sierradb.PartitionID(skey, 32)))), 0)
}

func TestRelaxedVersioning(t *testing.T) {
	srv := embedded.RunT(t, embedded.Config{RelaxedVersioning: true})
	c := dial(t, srv)
	wantMapShape(t, c.do("EAPPEND", "s", "e"), eaappendFields)
	wantMapShape(t, c.do("EAPPEND", "s", "e", "EXPECTED_VERSION", "any"), eaappendFields)
	wantMapShape(t, c.do("EAPPEND", "s", "e", "EXPECTED_VERSION", "exists"), eaappendFields)
	wantErrorPrefix(t, c.do("EAPPEND", "t", "e", "EXPECTED_VERSION", "exists"),
		"WRONGVER current stream version is empty but expected exists for partition key ")
	wantInt(t, c.do("ESVER", "s"), 2)
}

func TestEmappend(t *testing.T) {
	srv := embedded.RunT(t, embedded.Config{Now: func() time.Time { return fixedNow }})
	c := dial(t, srv)
	key := uuid.MustParse("550e8400-e29b-41d4-a716-446655440000")
	c.do("EAPPEND", "other", "x", "PARTITION_KEY", key.String(), "EXPECTED_VERSION", "empty") // sequence 0
	v := c.do("EMAPPEND", key.String(),
		"a", "A1", "EXPECTED_VERSION", "empty", "PAYLOAD", "1",
		"b", "B1", "EXPECTED_VERSION", "empty", "TIMESTAMP", "1600000000000",
		"a", "A2", "EXPECTED_VERSION", "0", "METADATA", "m",
		"PARTITION_KEY", "odd-stream-name", "EXPECTED_VERSION", "empty")
	wantMapShape(t, v, []field{
		{"partition_key", S, S},
		{"partition_id", S, I},
		{"first_partition_sequence", S, I},
		{"last_partition_sequence", S, I},
		{"events", S, resp3.Array},
	})
	if getStr(t, v, "partition_key") != key.String() || getInt(t, v, "partition_id") != 25 ||
		getInt(t, v, "first_partition_sequence") != 1 || getInt(t, v, "last_partition_sequence") != 4 {
		t.Fatalf("EMAPPEND: %s", v)
	}
	evs := get(t, v, "events").Elems
	want := []struct {
		stream  string
		version int64
		ts      int64
	}{{"a", 0, fixedNow.UnixMilli()}, {"b", 0, 1600000000000}, {"a", 1, fixedNow.UnixMilli()}, {"PARTITION_KEY", 0, fixedNow.UnixMilli()}}
	if len(evs) != len(want) {
		t.Fatalf("%d events", len(evs))
	}
	var tx string
	for i, e := range evs {
		wantMapShape(t, e, []field{{"event_id", S, S}, {"stream_id", S, S}, {"stream_version", S, I}, {"timestamp", S, I}})
		if getStr(t, e, "stream_id") != want[i].stream || getInt(t, e, "stream_version") != want[i].version || getInt(t, e, "timestamp") != want[i].ts {
			t.Fatalf("event %d: %s", i, e)
		}
		stored := c.do("EGET", getStr(t, e, "event_id"))
		if getInt(t, stored, "partition_sequence") != int64(1+i) || getStr(t, stored, "partition_key") != key.String() {
			t.Fatalf("stored event %d: %s", i, stored)
		}
		if i == 0 {
			tx = getStr(t, stored, "transaction_id")
		} else if getStr(t, stored, "transaction_id") != tx {
			t.Fatalf("events do not share a transaction id")
		}
	}
	if txID := uuid.MustParse(tx); txID[8]&0x80 != 0 {
		t.Fatalf("multi-event transaction id %s has the top bit of byte 8 set", txID)
	}
	// The streams are bound to the given key.
	wantNull(t, c.do("ESVER", "a"))
	wantInt(t, c.do("ESVER", "a", "PARTITION_KEY", key.String()), 1)
	wantErrorPrefix(t, c.do("EAPPEND", "a", "x", "EXPECTED_VERSION", "empty"),
		"DBOPFAILED database operation failed: partition key must be the same for all events in a stream: expected "+key.String())
}

func TestEmappendAtomicity(t *testing.T) {
	srv := embedded.RunT(t)
	c := dial(t, srv)
	// A key outside the partition of the stream "bound" used below.
	k := uuid.New()
	for sierradb.PartitionID(k, 32) == sierradb.PartitionID(sierradb.StreamPartitionKey("bound"), 32) {
		k = uuid.New()
	}
	key := k.String()
	before := c.do("EPSEQ", key)
	wantNull(t, before)
	tests := []struct {
		name string
		args []any
		want string
	}{
		{"third event wrong version", []any{"EMAPPEND", key,
			"a", "e", "EXPECTED_VERSION", "empty",
			"b", "e", "EXPECTED_VERSION", "empty",
			"c", "e", "EXPECTED_VERSION", "3"}, "WRONGVER current stream version is empty but expected 3 for partition key " + key + " and stream id c"},
		{"repeat checks earlier events", []any{"EMAPPEND", key,
			"a", "e", "EXPECTED_VERSION", "empty",
			"a", "e", "EXPECTED_VERSION", "empty"}, "WRONGVER current stream version is 0 but expected empty for partition key " + key + " and stream id a"},
		{"strict on a later event", []any{"EMAPPEND", key,
			"a", "e", "EXPECTED_VERSION", "empty",
			"b", "e"}, "INVALIDARG strict versioning mode rejects EXPECTED_VERSION any"},
		{"foreign event id", []any{"EMAPPEND", key,
			"a", "e", "EXPECTED_VERSION", "empty",
			"b", "e", "EXPECTED_VERSION", "empty", "EVENT_ID", sierradb.NewEventID(uuid.MustParse("550e8400-e29b-41d4-a716-446655440000")).String()},
			"INVALIDARG the event id must embed the partition hash"},
		{"no events", []any{"EMAPPEND", key}, "INVALIDARG "},
		{"no key", []any{"EMAPPEND"}, "INVALIDARG "},
		{"bad key", []any{"EMAPPEND", "a", "e", "EXPECTED_VERSION", "empty"}, "INVALIDARG invalid partition key"},
		{"repeated option", []any{"EMAPPEND", key, "a", "e", "PAYLOAD", "x", "PAYLOAD", "y"}, "INVALIDARG payload already specified"},
		{"missing name", []any{"EMAPPEND", key, "a", "e", "EXPECTED_VERSION", "empty", "b"}, "INVALIDARG "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := c.in(t)
			v := c.do(tt.args...)
			if strings.HasSuffix(tt.want, " ") {
				wantErrorPrefix(t, v, tt.want)
			} else {
				wantError(t, v, tt.want)
			}
			wantNull(t, c.do("EPSEQ", key))
		})
	}
	// A binding conflict on the last event also writes nothing.
	c.do("EAPPEND", "bound", "e", "EXPECTED_VERSION", "empty")
	wantErrorPrefix(t, c.do("EMAPPEND", key, "a", "e", "EXPECTED_VERSION", "empty", "bound", "e", "EXPECTED_VERSION", "empty"),
		"DBOPFAILED database operation failed: partition key must be the same")
	wantNull(t, c.do("EPSEQ", key))
	wantNull(t, c.do("ESVER", "a", "PARTITION_KEY", key))
}

func TestDuplicateEventIDs(t *testing.T) {
	srv := embedded.RunT(t)
	c := dial(t, srv)
	id := sierradb.NewEventID(sierradb.StreamPartitionKey("s")).String()
	c.do("EAPPEND", "s", "first", "EXPECTED_VERSION", "empty", "EVENT_ID", id)
	v := c.do("EAPPEND", "s", "second", "EXPECTED_VERSION", "0", "EVENT_ID", id)
	wantMapShape(t, v, eaappendFields)
	// Both are stored; EGET returns the most recent.
	wantInt(t, c.do("ESVER", "s"), 1)
	if got := getStr(t, c.do("EGET", id), "event_name"); got != "second" {
		t.Fatalf("EGET returned %q", got)
	}
}

func TestConcurrentAppendsOneWinner(t *testing.T) {
	srv := embedded.RunT(t)
	const n = 8
	results := make(chan resp3.Value, n)
	for range n {
		c := dial(t, srv)
		go func() {
			c.send("EAPPEND", "race", "e", "EXPECTED_VERSION", "empty")
			v, err := c.r.ReadValue()
			if err != nil {
				v = resp3.Value{Type: resp3.SimpleError, Str: []byte(err.Error())}
			}
			results <- v
		}()
	}
	ok := 0
	for range n {
		v := <-results
		switch {
		case v.Type == resp3.Map:
			ok++
		case v.Type == resp3.SimpleError && strings.HasPrefix(string(v.Str), "WRONGVER "):
		default:
			t.Fatalf("unexpected reply %s", v)
		}
	}
	if ok != 1 {
		t.Fatalf("%d appends with EXPECTED_VERSION empty succeeded", ok)
	}
}

// TestRepeatedDefaultOptions: SierraDB detects a repeated option by
// comparing the earlier value with the default, so repeating
// EXPECTED_VERSION any or an empty PAYLOAD/METADATA is accepted and the last
// value wins.
func TestRepeatedDefaultOptions(t *testing.T) {
	srv := embedded.RunT(t)
	c := dial(t, srv)
	v := c.do("EAPPEND", "r", "e", "EXPECTED_VERSION", "any", "PAYLOAD", "", "METADATA", "", "EXPECTED_VERSION", "empty",
		"PAYLOAD", "p2", "METADATA", "m2")
	wantMapShape(t, v, eaappendFields)
	e := c.do("EGET", getStr(t, v, "event_id"))
	if getStr(t, e, "payload") != "p2" || getStr(t, e, "metadata") != "m2" {
		t.Fatalf("EGET: %s", e)
	}
	// The later EXPECTED_VERSION applies: empty fails on a stream that has
	// an event.
	wantErrorPrefix(t, c.do("EAPPEND", "r", "e", "EXPECTED_VERSION", "any", "EXPECTED_VERSION", "empty"), "WRONGVER ")
	key := uuid.NewString()
	v = c.do("EMAPPEND", key, "m", "e", "EXPECTED_VERSION", "any", "EXPECTED_VERSION", "empty", "PAYLOAD", "", "PAYLOAD", "x")
	if v.Type != resp3.Map {
		t.Fatalf("EMAPPEND: %s", v)
	}
}

func TestEmappendParse(t *testing.T) {
	srv := embedded.RunT(t)
	c := dial(t, srv)
	key := uuid.NewString()
	trailing := "INVALIDARG unexpected number: expected stream id, event name, EVENT_ID, EXPECTED_VERSION, TIMESTAMP, PAYLOAD, METADATA or end of input"
	for _, tt := range []struct {
		args []any
		want string
	}{
		{[]any{"EMAPPEND", key, "s", "e", "EXPECTED_VERSION", "empty", 5}, trailing},
		// An option whose value does not parse starts the next event.
		{[]any{"EMAPPEND", key, "s", "e", "EXPECTED_VERSION", "nope"}, "INVALIDARG strict versioning mode rejects EXPECTED_VERSION any"},
		{[]any{"EMAPPEND", key, "s", "e", "EXPECTED_VERSION", "empty", "PAYLOAD", 5}, "INVALIDARG unexpected number: expected event name"},
		{[]any{"EMAPPEND", key, "s", "e", "EXPECTED_VERSION", "empty", "PARTITION_KEY"}, "INVALIDARG unexpected end of input: expected event name"},
		{[]any{"EMAPPEND", key, 5}, "INVALIDARG unexpected number: expected stream id"},
		{[]any{"EMAPPEND", key}, "INVALIDARG unexpected end of input: expected stream id"},
		{[]any{"EMAPPEND", "nope"}, "INVALIDARG invalid partition key"},
		{[]any{"EMAPPEND", key, "s", "e", "EXPECTED_VERSION", "empty", "EVENT_ID", uuid.Nil.String()},
			"INVALIDARG the event id must embed the partition hash"},
		{[]any{"EMAPPEND", key, "s", "e", "EXPECTED_VERSION", "empty", "TIMESTAMP", "18446744073710"},
			"INVALIDARG invalid timestamp format: expected milliseconds, got nanoseconds"},
	} {
		wantError(t, c.do(tt.args...), tt.want)
	}
	wantNull(t, c.do("ESVER", "s", "PARTITION_KEY", key))
}

// TestNilEventIDAccepted: the nil UUID is an event id like any other; it is
// accepted where its partition hash (0) matches the key's.
func TestNilEventIDAccepted(t *testing.T) {
	srv := embedded.RunT(t)
	c := dial(t, srv)
	key := sierradb.WithPartitionHash(uuid.New(), 0)
	v := c.do("EMAPPEND", key.String(), "n", "e", "EXPECTED_VERSION", "empty", "EVENT_ID", uuid.Nil.String(), "PAYLOAD", "nil")
	if v.Type != resp3.Map {
		t.Fatalf("EMAPPEND with the nil id under a hash-0 key: %s", v)
	}
	e := c.do("EGET", uuid.Nil.String())
	if getStr(t, e, "event_id") != uuid.Nil.String() || getStr(t, e, "payload") != "nil" {
		t.Fatalf("EGET nil: %s", e)
	}
}
