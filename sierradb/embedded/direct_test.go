package embedded_test

import (
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

func TestDirectAppend(t *testing.T) {
	srv := embedded.RunT(t, embedded.Config{Now: func() time.Time { return fixedNow }})
	key := uuid.MustParse("550e8400-e29b-41d4-a716-446655440000")
	payload := []byte("hello")
	res, err := srv.AppendMulti(key,
		sierradb.NewEvent{StreamID: "a", Name: "A", ExpectedVersion: sierradb.ExpectEmpty, Payload: payload},
		sierradb.NewEvent{StreamID: "a", Name: "B", ExpectedVersion: sierradb.ExpectVersion(0), Timestamp: time.UnixMilli(5)},
	)
	if err != nil {
		t.Fatal(err)
	}
	payload[0] = 'X' // the server keeps its own copy
	if res.PartitionKey != key || res.PartitionID != 25 || res.FirstPartitionSequence != 0 || res.LastPartitionSequence != 1 ||
		len(res.Events) != 2 || res.Events[1].StreamVersion != 1 || res.Events[1].PartitionSequence != 1 ||
		!res.Events[0].Timestamp.Equal(time.UnixMilli(fixedNow.UnixMilli())) || !res.Events[1].Timestamp.Equal(time.UnixMilli(5)) {
		t.Fatalf("Append: %+v", res)
	}
	got := srv.StreamWithKey(key, "a")
	if len(got) != 2 || string(got[0].Payload) != "hello" || got[0].TransactionID != got[1].TransactionID || got[1].Name != "B" {
		t.Fatalf("StreamWithKey: %+v", got)
	}
	if len(srv.Stream("a")) != 0 {
		t.Fatal("Stream with the default key sees a stream bound to another key")
	}
	e, ok := srv.Event(res.Events[1].EventID)
	if !ok || e.StreamVersion != 1 || e.PartitionID != 25 {
		t.Fatalf("Event: %+v %v", e, ok)
	}
	if _, ok := srv.Event(uuid.New()); ok {
		t.Fatal("Event found a random id")
	}
	if p := srv.Partition(25); len(p) != 2 {
		t.Fatalf("Partition: %d events", len(p))
	}
	if srv.Partition(32) != nil {
		t.Fatal("Partition beyond the count")
	}
}

func TestDirectAppendErrors(t *testing.T) {
	srv := embedded.RunT(t)
	key := sierradb.StreamPartitionKey("s")
	if _, err := srv.AppendStream("s", "seed", nil); err != nil { // any version, even when strict
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  uuid.UUID
		ev   sierradb.NewEvent
		code string
		is   error
	}{
		{"strict any", key, sierradb.NewEvent{StreamID: "s", Name: "e"}, sierradb.CodeInvalidArg, sierradb.ErrInvalidArgument},
		{"wrong version", key, sierradb.NewEvent{StreamID: "s", Name: "e", ExpectedVersion: sierradb.ExpectEmpty}, sierradb.CodeWrongVersion, sierradb.ErrWrongExpectedVersion},
		{"key binding", uuid.New(), sierradb.NewEvent{StreamID: "s", Name: "e", ExpectedVersion: sierradb.ExpectEmpty}, sierradb.CodeDBOpFailed, nil},
		{"foreign event id", key, sierradb.NewEvent{StreamID: "t", Name: "e", ExpectedVersion: sierradb.ExpectEmpty,
			ID: sierradb.NewEventID(uuid.MustParse("550e8400-e29b-41d4-a716-446655440000"))}, sierradb.CodeInvalidArg, sierradb.ErrInvalidArgument},
		{"bad stream id", key, sierradb.NewEvent{StreamID: "", Name: "e", ExpectedVersion: sierradb.ExpectEmpty}, sierradb.CodeInvalidArg, sierradb.ErrInvalidArgument},
		{"timestamp before 1970", key, sierradb.NewEvent{StreamID: "t", Name: "e", ExpectedVersion: sierradb.ExpectEmpty, Timestamp: time.UnixMilli(-5)}, sierradb.CodeDBOpFailed, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := srv.AppendMulti(tt.key, tt.ev)
			var se *sierradb.ServerError
			if !errors.As(err, &se) || se.Code != tt.code {
				t.Fatalf("Append = %v, want a %s server error", err, tt.code)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("Append = %v, want it to match %v", err, tt.is)
			}
		})
	}
	_, err := srv.AppendMulti(key, sierradb.NewEvent{StreamID: "s", Name: "e", ExpectedVersion: sierradb.ExpectVersion(3)})
	var wv *sierradb.WrongExpectedVersionError
	if !errors.As(err, &wv) || !wv.Parsed || wv.Current != 0 || wv.StreamID != "s" || wv.PartitionKey != key {
		t.Fatalf("WRONGVER detail: %#v", err)
	}
	if n := len(srv.Stream("s")); n != 1 {
		t.Fatalf("%d events after failed appends", n)
	}
}

func TestConcurrentAppendsAndReads(t *testing.T) {
	for _, dir := range []string{"", t.TempDir()} {
		name := "memory"
		if dir != "" {
			name = "directory"
		}
		t.Run(name, func(t *testing.T) {
			srv := embedded.RunT(t, embedded.Config{Dir: dir, PartitionCount: 8})
			sub := dial(t, srv)
			sub.subscribe(1, "EPSUB", "*", "FROM", "0")
			const writers, perWriter = 8, 40
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(2)
				stream := "w" + strconv.Itoa(w)
				go func() { // writer
					defer wg.Done()
					for i := range perWriter {
						_, err := srv.AppendMulti(sierradb.StreamPartitionKey(stream), sierradb.NewEvent{
							StreamID: stream, Name: "e", ExpectedVersion: sierradb.ExpectAfter(int64(i) - 1),
						})
						if err != nil {
							t.Errorf("append: %v", err)
							return
						}
					}
				}()
				go func() { // reader
					defer wg.Done()
					for range perWriter {
						evs := srv.Stream(stream)
						for i, e := range evs {
							if e.StreamVersion != uint64(i) {
								t.Errorf("stream %s: version %d at %d", stream, e.StreamVersion, i)
								return
							}
						}
						srv.Partition(uint16(w))
					}
				}()
			}
			wg.Wait()
			seen := map[string]int{}
			for range writers * perWriter {
				_, _, ev := sub.message()
				s := getStr(t, ev, "stream_id")
				if v := getInt(t, ev, "stream_version"); v != int64(seen[s]) {
					t.Fatalf("stream %s: version %d, want %d", s, v, seen[s])
				}
				seen[s]++
			}
		})
	}
}
