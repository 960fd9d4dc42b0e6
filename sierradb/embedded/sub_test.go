package embedded_test

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// subscribe sends a subscription command and checks the reply and the
// subscribe push; it returns the subscription id.
func (c *client) subscribe(wantActive int64, args ...any) string {
	c.t.Helper()
	c.send(args...)
	v := c.read()
	if v.Type != resp3.SimpleString {
		c.t.Fatalf("%v: got %s, want a simple string subscription id", args, v)
	}
	id, err := uuid.Parse(string(v.Str))
	if err != nil || id.Version() != 4 || id.String() != string(v.Str) {
		c.t.Fatalf("subscription id %q is not a lowercase UUIDv4", v.Str)
	}
	p := c.readPush()
	if p.Len() != 3 || p.Elems[0].Type != S || string(p.Elems[0].Str) != "subscribe" ||
		p.Elems[1].Type != S || string(p.Elems[1].Str) != id.String() || p.Elems[2].Type != I || p.Elems[2].Int != wantActive {
		c.t.Fatalf("subscribe push %s, want [subscribe, %s, %d]", p, id, wantActive)
	}
	return id.String()
}

// message reads the next push and checks it is a message.
func (c *client) message() (sub string, cursor int64, ev resp3.Value) {
	c.t.Helper()
	p := c.readPush()
	if p.Len() != 4 || p.Elems[0].Type != S || string(p.Elems[0].Str) != "message" || p.Elems[1].Type != S || p.Elems[2].Type != I {
		c.t.Fatalf("got push %s, want a message", p)
	}
	wantMapShape(c.t, p.Elems[3], eventFields)
	return string(p.Elems[1].Str), p.Elems[2].Int, p.Elems[3]
}

// expectNoPush checks that no push arrives within a short time after a PING
// round trip.
func (c *client) expectNoPush() {
	c.t.Helper()
	wantSimple(c.t, c.do("PING"), "PONG")
	if len(c.pushes) > 0 {
		c.t.Fatalf("unexpected push %s", c.pushes[0])
	}
	c.nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	v, err := c.r.ReadValue()
	if err == nil {
		c.t.Fatalf("unexpected frame %s", v)
	}
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		c.t.Fatalf("read: %v", err)
	}
}

func TestSubscriptionWireFormat(t *testing.T) {
	srv := embedded.RunT(t)
	c, w := dial(t, srv), dial(t, srv)
	id := c.subscribe(1, "ESUB", "s")
	v := w.do("EAPPEND", "s", "e", "EXPECTED_VERSION", "empty", "PAYLOAD", "x")
	sub, cursor, ev := c.message()
	if sub != id || cursor != 0 || getStr(t, ev, "event_id") != getStr(t, v, "event_id") || getStr(t, ev, "payload") != "x" {
		t.Fatalf("message %s %d %s", sub, cursor, ev)
	}
	w.do("EAPPEND", "s", "e", "EXPECTED_VERSION", "0")
	if _, cursor, _ := c.message(); cursor != 1 {
		t.Fatalf("cursor %d, want 1", cursor)
	}
	wantSimple(t, c.do("EACK", id, "1"), "OK")
}

// TestSubscriptionNoGapNoDuplicate subscribes while appends race, in every
// start mode, and checks each subscription sees a gapless, duplicate-free
// run of events.
func TestSubscriptionNoGapNoDuplicate(t *testing.T) {
	srv := embedded.RunT(t)
	key := sierradb.StreamPartitionKey("race")
	pid := strconv.Itoa(int(sierradb.PartitionID(key, 32)))
	w := dial(t, srv)

	// The writer appends until the subscriptions are all set up, then 100
	// more, and reports how many it appended (or its error). It calls
	// nothing on t: the test joins it before returning, however it ends.
	var mu sync.Mutex
	ackedCount := 0
	count := func() int { mu.Lock(); defer mu.Unlock(); return ackedCount }
	subsDone := make(chan struct{})
	stop := make(chan struct{})
	type result struct {
		n   int
		err error
	}
	final := make(chan result, 1)
	go func() {
		stopAt := -1
		for i := 0; ; i++ {
			if stopAt < 0 {
				select {
				case <-subsDone:
					stopAt = i + 100
				case <-stop:
					final <- result{i, errors.New("stopped before the subscriptions were set up")}
					return
				default:
				}
			}
			if i == stopAt {
				final <- result{n: i}
				return
			}
			exp := "empty"
			if i > 0 {
				exp = strconv.Itoa(i - 1)
			}
			req := resp3.Value{Type: resp3.Array}
			for _, a := range []string{"EAPPEND", "race", "e", "EXPECTED_VERSION", exp} {
				req.Elems = append(req.Elems, arg(a))
			}
			w.w.WriteValue(req)
			if err := w.w.Flush(); err != nil {
				final <- result{i, fmt.Errorf("append %d: %w", i, err)}
				return
			}
			w.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			v, err := w.r.ReadValue()
			if err != nil || v.Type != resp3.Map {
				final <- result{i, fmt.Errorf("append %d: %v %v", i, v, err)}
				return
			}
			mu.Lock()
			ackedCount++
			mu.Unlock()
		}
	}()
	var res *result
	join := func() result {
		if res == nil {
			r := <-final
			res = &r
		}
		return *res
	}
	defer func() { // a setup failure stops the writer too
		close(stop)
		join()
	}()
	eventually(t, "some appends", func() bool { return count() >= 50 })

	type subCase struct {
		name   string
		c      *client
		field  string
		minPos int64 // the first delivered position must be at least this
		maxPos int64 // and at most this (-1: exactly minPos)
	}
	var subs []subCase
	add := func(name, field string, args ...any) {
		c := dial(t, srv)
		before := int64(count())
		c.subscribe(1, args...)
		after := int64(count())
		sc := subCase{name: name, c: c, field: field, minPos: 0, maxPos: -1}
		if args[len(args)-1] == "LATEST" || len(args) == 2 {
			// The writer has at most one append whose reply it has not
			// counted yet.
			sc.minPos, sc.maxPos = before, after+1
		}
		subs = append(subs, sc)
	}
	add("ESUB FROM 0", "stream_version", "ESUB", "race", "FROM", "0")
	add("ESUB live", "stream_version", "ESUB", "race")
	add("EPSUB FROM 0", "partition_sequence", "EPSUB", pid, "FROM", "0")
	add("ESUB FROM LATEST", "stream_version", "ESUB", "race", "FROM", "LATEST")
	add("EPSUB * FROM MAP", "partition_sequence", "EPSUB", "*", "FROM", "MAP", pid+"=0")
	add("EPSUB FROM LATEST", "partition_sequence", "EPSUB", pid, "FROM", "LATEST")
	close(subsDone)
	r := join()
	if r.err != nil {
		t.Fatal(r.err)
	}
	total := int64(r.n)

	for _, sc := range subs {
		t.Run(sc.name, func(t *testing.T) {
			sc.c.t = t
			var first int64 = -1
			var next int64
			for first < 0 || next < total {
				_, cursor, ev := sc.c.message()
				pos := getInt(t, ev, sc.field)
				if first < 0 {
					first = pos
					next = pos
					if pos < sc.minPos || (sc.maxPos >= 0 && pos > sc.maxPos) || (sc.maxPos < 0 && pos != sc.minPos) {
						t.Fatalf("first event at %d, want within [%d, %d]", pos, sc.minPos, sc.maxPos)
					}
				}
				if pos != next {
					t.Fatalf("got position %d, want %d (gap or duplicate)", pos, next)
				}
				if cursor != pos-first {
					t.Fatalf("cursor %d at position %d, first %d", cursor, pos, first)
				}
				next++
			}
			sc.c.expectNoPush()
		})
	}
}

func TestSubscriptionWindow(t *testing.T) {
	srv := embedded.RunT(t)
	c, w := dial(t, srv), dial(t, srv)
	appendN(t, w, "s", 0, 10)
	id := c.subscribe(1, "ESUB", "s", "FROM", "0", "WINDOW", "3")
	expect := func(from, to int64) {
		t.Helper()
		for want := from; want <= to; want++ {
			if _, cursor, ev := c.message(); cursor != want || getInt(t, ev, "stream_version") != want {
				t.Fatalf("cursor %d version %d, want %d", cursor, getInt(t, ev, "stream_version"), want)
			}
		}
		c.expectNoPush()
	}
	expect(0, 2) // stalls at exactly WINDOW unacknowledged events
	wantSimple(t, c.do("EACK", id, "0"), "OK")
	expect(3, 3) // c - 0 <= 3
	wantSimple(t, c.do("EACK", id, "5"), "OK")
	expect(4, 8)
	wantSimple(t, c.do("EACK", id, "2"), "OK") // a lower ack moves the window back
	c.expectNoPush()
	wantSimple(t, c.do("EACK", id, "9"), "OK")
	expect(9, 9) // only ten events exist
	appendN(t, w, "s", 10, 5)
	expect(10, 12)
	wantSimple(t, c.do("EACK", id, "18446744073709551615"), "OK") // saturates
	expect(13, 14)
}

func TestSubscriptionDefaultWindow(t *testing.T) {
	srv := embedded.RunT(t, embedded.Config{RelaxedVersioning: true})
	c := dial(t, srv)
	key := uuid.New()
	evs := make([]sierradb.NewEvent, 1005)
	for i := range evs {
		evs[i] = sierradb.NewEvent{StreamID: "s", Name: "e"}
	}
	if _, err := srv.AppendMulti(key, evs...); err != nil {
		t.Fatal(err)
	}
	c.subscribe(1, "ESUB", "s", "PARTITION_KEY", key.String(), "FROM", "0")
	for want := int64(0); want < 1000; want++ {
		if _, cursor, _ := c.message(); cursor != want {
			t.Fatalf("cursor %d, want %d", cursor, want)
		}
	}
	c.expectNoPush()
}

func TestEackErrors(t *testing.T) {
	srv := embedded.RunT(t)
	c1, c2 := dial(t, srv), dial(t, srv)
	id := c1.subscribe(1, "EPSUB", "0")
	wantError(t, c2.do("EACK", id, "0"), "NOTFOUND subscription not found")
	wantError(t, c1.do("EACK", uuid.NewString(), "0"), "NOTFOUND subscription not found")
	wantError(t, c1.do("EACK", "nope", "0"), "INVALIDARG invalid subscription id")
	wantErrorPrefix(t, c1.do("EACK", id), "INVALIDARG ")
	wantErrorPrefix(t, c1.do("EACK", id, "x"), "INVALIDARG ")
	wantSimple(t, c1.do("EACK", id, 7), "OK")
}

func TestSeveralSubscriptionsOneConnection(t *testing.T) {
	srv := embedded.RunT(t)
	c := dial(t, srv)
	subA := c.subscribe(1, "ESUB", "a")
	subB := c.subscribe(2, "ESUB", "b", "a") // both streams
	subAll := c.subscribe(3, "EPSUB", "*")
	// Appends on the same connection interleave with pushes; replies stay in
	// order and pushes never split a reply.
	const n = 30
	for i := range n {
		stream := []string{"a", "b"}[i%2]
		exp := "empty"
		if i >= 2 {
			exp = strconv.Itoa(i/2 - 1)
		}
		v := c.do("EAPPEND", stream, "e"+strconv.Itoa(i), "EXPECTED_VERSION", exp)
		if v.Type != resp3.Map {
			t.Fatalf("append %d: %s", i, v)
		}
		wantSimple(t, c.do("PING"), "PONG")
	}
	got := map[string][]string{}
	for range n/2 + n + n { // subA: a only; subB: a and b; subAll: all
		sub, _, ev := c.message()
		got[sub] = append(got[sub], getStr(t, ev, "event_name"))
	}
	if len(got[subA]) != n/2 || len(got[subB]) != n || len(got[subAll]) != n {
		t.Fatalf("deliveries: a=%d b=%d all=%d", len(got[subA]), len(got[subB]), len(got[subAll]))
	}
	c.expectNoPush()
	if srv.SubscriptionCount() != 3 {
		t.Fatalf("SubscriptionCount = %d", srv.SubscriptionCount())
	}
}

func TestSubscriptionsStopWithConnection(t *testing.T) {
	srv := embedded.RunT(t)
	base := runtime.NumGoroutine()
	c := dial(t, srv)
	for i := range 5 {
		c.subscribe(int64(i+1), "EPSUB", "*", "FROM", "0")
	}
	c.subscribe(6, "ESUB", "x", "WINDOW", "1")
	if n := srv.SubscriptionCount(); n != 6 {
		t.Fatalf("SubscriptionCount = %d", n)
	}
	c.nc.Close()
	eventually(t, "subscriptions to stop", func() bool { return srv.SubscriptionCount() == 0 })
	eventually(t, "the connection to close", func() bool { return srv.ConnectionCount() == 0 })
	eventually(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
}

// A subscriber that never reads must not block appends or other clients.
func TestSlowSubscriberDoesNotBlockStore(t *testing.T) {
	srv := embedded.RunT(t, embedded.Config{RelaxedVersioning: true})
	slow := dial(t, srv)
	slow.subscribe(1, "EPSUB", "*", "WINDOW", "1000000")
	payload := make([]byte, 64<<10)
	key := uuid.New()
	for range 100 { // ~6 MiB pushed at a client that never reads
		if _, err := srv.AppendMulti(key, sierradb.NewEvent{StreamID: "s", Name: "e", Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	c := dial(t, srv)
	wantInt(t, c.do("ESVER", "s", "PARTITION_KEY", key.String()), 99)
}

func TestSubscriptionFairInterleaving(t *testing.T) {
	srv := embedded.RunT(t, embedded.Config{PartitionCount: 4, RelaxedVersioning: true})
	for _, key := range []uuid.UUID{partitionKey(0, 4), partitionKey(1, 4)} {
		evs := make([]sierradb.NewEvent, 300)
		for i := range evs {
			evs[i] = sierradb.NewEvent{StreamID: "s" + key.String()[:8], Name: "e"}
		}
		if _, err := srv.AppendMulti(key, evs...); err != nil {
			t.Fatal(err)
		}
	}
	c := dial(t, srv)
	c.subscribe(1, "EPSUB", "*", "FROM", "0")
	seen := map[int64]int{}
	for range 150 {
		_, _, ev := c.message()
		seen[getInt(t, ev, "partition_id")]++
	}
	if seen[0] == 0 || seen[1] == 0 {
		t.Fatalf("the first 150 events came from %v: not interleaved", seen)
	}
}

// partitionKey returns a UUID whose partition is pid.
func partitionKey(pid, count uint16) uuid.UUID {
	for {
		k := uuid.New()
		if sierradb.PartitionID(k, count) == pid {
			return k
		}
	}
}

func TestEpsubForms(t *testing.T) {
	srv := embedded.RunT(t, embedded.Config{PartitionCount: 4, RelaxedVersioning: true})
	keys := []uuid.UUID{partitionKey(0, 4), partitionKey(1, 4), partitionKey(2, 4), partitionKey(3, 4)}
	for p, k := range keys {
		for i := range 3 {
			if _, err := srv.AppendMulti(k, sierradb.NewEvent{StreamID: "p" + strconv.Itoa(p), Name: strconv.Itoa(i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name string
		args []any
		want map[int64][]int64 // partition -> sequences delivered from history
	}{
		{"one id", []any{"EPSUB", "2", "FROM", "1"}, map[int64][]int64{2: {1, 2}}},
		{"integer id", []any{"EPSUB", 3, "FROM", "2"}, map[int64][]int64{3: {2}}},
		{"list", []any{"EPSUB", "0, 1", "FROM", "0"}, map[int64][]int64{0: {0, 1, 2}, 1: {0, 1, 2}}},
		{"star from", []any{"EPSUB", "*", "FROM", "2"}, map[int64][]int64{0: {2}, 1: {2}, 2: {2}, 3: {2}}},
		{"map with default", []any{"EPSUB", "*", "FROM", "MAP", "1=1", "3=2", "DEFAULT", "2"}, map[int64][]int64{0: {2}, 1: {1, 2}, 2: {2}, 3: {2}}},
		{"map without default", []any{"EPSUB", "*", "from", "map", "1=0"}, map[int64][]int64{1: {0, 1, 2}}},
		{"latest", []any{"EPSUB", "*", "FROM", "LATEST"}, map[int64][]int64{}},
		{"no from", []any{"EPSUB", "*", "WINDOW", "10"}, map[int64][]int64{}},
		{"from and window", []any{"EPSUB", "0", "FROM", "0", "WINDOW", "10"}, map[int64][]int64{0: {0, 1, 2}}},
		{"unknown partition delivers nothing", []any{"EPSUB", "9", "FROM", "0"}, map[int64][]int64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, srv)
			c.subscribe(1, tt.args...)
			total := 0
			for _, s := range tt.want {
				total += len(s)
			}
			got := map[int64][]int64{}
			for range total {
				_, _, ev := c.message()
				p := getInt(t, ev, "partition_id")
				got[p] = append(got[p], getInt(t, ev, "partition_sequence"))
			}
			c.expectNoPush()
			for p, seqs := range tt.want {
				if !equalInts(got[p], seqs) {
					t.Fatalf("partition %d: got %v, want %v", p, got[p], seqs)
				}
			}
		})
	}
	c := dial(t, srv)
	for _, args := range [][]any{
		{"EPSUB"},
		{"EPSUB", uuid.NewString()},
		{"EPSUB", "1-3"},
		{"EPSUB", "1,x"},
		{"EPSUB", "70000"},
		{"EPSUB", "*", "FROM"},
		{"EPSUB", "*", "FROM", "x"},
		{"EPSUB", "*", "FROM", "MAP"},
		{"EPSUB", "*", "FROM", "MAP", "1"},
		{"EPSUB", "*", "FROM", "MAP", "1=x"},
		{"EPSUB", "*", "FROM", "MAP", "1=1", "DEFAULT"},
		{"EPSUB", "*", "FROM", "1", "FROM", "2"},
		{"EPSUB", "*", "WINDOW", "1", "WINDOW", "2"},
		{"EPSUB", "*", "WINDOW", "0"},
		{"EPSUB", "*", "DEFAULT", "0"},
	} {
		wantErrorPrefix(t, c.do(args...), "INVALIDARG ")
	}
	wantError(t, c.do("EPSUB", "*", "WINDOW", "0"), "INVALIDARG number 0 must not be less than 1")
}

func TestEsubForms(t *testing.T) {
	srv := embedded.RunT(t, embedded.Config{RelaxedVersioning: true})
	key := uuid.New()
	for i := range 3 {
		srv.AppendStream("a", strconv.Itoa(i), nil)
		srv.AppendStream("b", strconv.Itoa(i), nil)
		if _, err := srv.AppendMulti(key, sierradb.NewEvent{StreamID: "k", Name: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		args []any
		want map[string][]int64
	}{
		{"from", []any{"ESUB", "a", "FROM", "1"}, map[string][]int64{"a": {1, 2}}},
		{"two streams from", []any{"ESUB", "a", "b", "FROM", "2"}, map[string][]int64{"a": {2}, "b": {2}}},
		{"partition key", []any{"ESUB", "k", "PARTITION_KEY", key.String(), "FROM", "0"}, map[string][]int64{"k": {0, 1, 2}}},
		{"wrong key", []any{"ESUB", "k", "FROM", "0"}, map[string][]int64{}},
		{"map", []any{"ESUB", "a", "b", "FROM", "MAP", "b=1", "WINDOW", "5"}, map[string][]int64{"b": {1, 2}}},
		{"latest", []any{"ESUB", "a", "FROM", "LATEST"}, map[string][]int64{}},
		{"keywords in any case", []any{"ESUB", "a", "from", "0", "window", "2"}, map[string][]int64{"a": {0, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, srv)
			c.subscribe(1, tt.args...)
			total := 0
			for _, s := range tt.want {
				total += len(s)
			}
			got := map[string][]int64{}
			for range total {
				_, _, ev := c.message()
				s := getStr(t, ev, "stream_id")
				got[s] = append(got[s], getInt(t, ev, "stream_version"))
			}
			c.expectNoPush()
			for s, vs := range tt.want {
				if !equalInts(got[s], vs) {
					t.Fatalf("stream %s: got %v, want %v", s, got[s], vs)
				}
			}
		})
	}
	c := dial(t, srv)
	for _, args := range [][]any{
		{"ESUB"},
		{"ESUB", ""},
		{"ESUB", "a", "PARTITION_KEY"},
		{"ESUB", "a", "PARTITION_KEY", "x"},
		{"ESUB", "a", "PARTITION_KEY", uuid.NewString(), "PARTITION_KEY", uuid.NewString()},
		{"ESUB", "a", "FROM"},
		{"ESUB", "a", "FROM", "MAP"},
		{"ESUB", "a", "FROM", "MAP", "a"},
		{"ESUB", "a", "FROM", "MAP", "a=x"},
		{"ESUB", "a", "FROM", "1", "FROM", "1"},
		{"ESUB", "a", "WINDOW", "0"},
		{"ESUB", "a", "WINDOW", "1", "WINDOW", "1"},
		{"ESUB", "a", 5},
	} {
		if v := c.do(args...); v.Type != resp3.SimpleError || !strings.HasPrefix(string(v.Str), "INVALIDARG ") {
			t.Fatalf("%q: got %s, want INVALIDARG", args, v)
		}
	}
	// A live subscription receives new events only.
	live := c.subscribe(1, "ESUB", "a")
	srv.AppendStream("a", "new", nil)
	sub, cursor, ev := c.message()
	if sub != live || cursor != 0 || getStr(t, ev, "event_name") != "new" || getInt(t, ev, "stream_version") != 3 {
		t.Fatalf("live event: %s %d %s", sub, cursor, ev)
	}
}
