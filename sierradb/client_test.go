package sierradb_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
)

func TestAppendReadBack(t *testing.T) {
	eachTarget(t, func(t *testing.T, c *sierradb.Client) {
		ctx := ctxT(t)
		s := streamName("acct")
		ts := time.UnixMilli(1_700_000_000_123).UTC()
		r0, err := c.Append(ctx, sierradb.NewEvent{StreamID: s, Name: "Opened", ExpectedVersion: sierradb.ExpectEmpty,
			Payload: []byte("p0"), Metadata: []byte("m0"), Timestamp: ts})
		if err != nil {
			t.Fatal(err)
		}
		key := sierradb.StreamPartitionKey(s)
		if r0.StreamVersion != 0 || r0.PartitionKey != key || r0.PartitionID != sierradb.PartitionID(key, 32) || !r0.Timestamp.Equal(ts) {
			t.Fatalf("append result %+v", r0)
		}
		if !sierradb.EventIDMatchesPartitionKey(r0.EventID, key) {
			t.Fatalf("event id %s lacks the partition hash", r0.EventID)
		}
		r1, err := c.Append(ctx, sierradb.NewEvent{StreamID: s, Name: "Deposited", ExpectedVersion: sierradb.ExpectVersion(0)})
		if err != nil {
			t.Fatal(err)
		}
		if r1.StreamVersion != 1 || r1.PartitionSequence <= r0.PartitionSequence {
			t.Fatalf("second append %+v after %+v", r1, r0)
		}
		ev, err := c.Get(ctx, r0.EventID)
		if err != nil {
			t.Fatal(err)
		}
		if ev.StreamID != s || ev.Name != "Opened" || string(ev.Payload) != "p0" || string(ev.Metadata) != "m0" ||
			ev.StreamVersion != 0 || ev.PartitionSequence != r0.PartitionSequence || !ev.Timestamp.Equal(ts) {
			t.Fatalf("EGET returned %+v", ev)
		}
		if _, err := c.Get(ctx, sierradb.NewEventID(key)); !errors.Is(err, sierradb.ErrNotFound) {
			t.Fatalf("EGET of a missing id: %v", err)
		}
		// SierraDB confirms appends asynchronously: a read right after
		// the reply may miss it (the conformance suite's read-your-writes).
		waitVersion(t, c, s, key, 1)
		v, err := c.StreamVersion(ctx, s)
		if err != nil || v != 1 {
			t.Fatalf("StreamVersion = %d, %v", v, err)
		}
		if v, err := c.StreamVersion(ctx, streamName("none")); err != nil || v != -1 {
			t.Fatalf("StreamVersion of an empty stream = %d, %v", v, err)
		}
		page, err := c.Scan(ctx, s, 0, sierradb.End)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Events) != 2 || page.Events[1].Name != "Deposited" || page.Events[1].Payload != nil {
			t.Fatalf("scan page %+v", page)
		}
		seq, err := c.PartitionSequence(ctx, r1.PartitionID)
		if err != nil || seq < int64(r1.PartitionSequence) {
			t.Fatalf("PartitionSequence = %d, %v", seq, err)
		}
		pp, err := c.PartitionScan(ctx, r0.PartitionID, r0.PartitionSequence, sierradb.End, sierradb.WithCount(1))
		if err != nil || len(pp.Events) != 1 || pp.Events[0].ID != r0.EventID || !pp.HasMore {
			t.Fatalf("PartitionScan = %+v, %v", pp, err)
		}
	})
}

func TestScanAllPages(t *testing.T) {
	eachTarget(t, func(t *testing.T, c *sierradb.Client) {
		ctx := ctxT(t)
		s := streamName("pages")
		const n = 250
		var batch []sierradb.NewEvent
		for i := range n {
			batch = append(batch, sierradb.NewEvent{StreamID: s, Name: "E", ExpectedVersion: sierradb.ExpectAfter(int64(i) - 1), Payload: []byte{byte(i)}})
		}
		if _, err := c.AppendMulti(ctx, sierradb.StreamPartitionKey(s), batch); err != nil {
			t.Fatal(err)
		}
		waitVersion(t, c, s, sierradb.StreamPartitionKey(s), n-1)
		var got []uint64
		for ev, err := range c.ScanAll(ctx, s, 3, sierradb.WithCount(40)) {
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ev.Payload, []byte{byte(ev.StreamVersion)}) {
				t.Fatalf("version %d carries payload %v", ev.StreamVersion, ev.Payload)
			}
			got = append(got, ev.StreamVersion)
		}
		if len(got) != n-3 || got[0] != 3 || got[len(got)-1] != n-1 {
			t.Fatalf("ScanAll read %d events, from %d", len(got), got[0])
		}
		for i := 1; i < len(got); i++ {
			if got[i] != got[i-1]+1 {
				t.Fatalf("gap between %d and %d", got[i-1], got[i])
			}
		}
	})
}

func TestAppendMulti(t *testing.T) {
	eachTarget(t, func(t *testing.T, c *sierradb.Client) {
		ctx := ctxT(t)
		a, b := streamName("a"), streamName("b")
		key := uuid.New()
		res, err := c.AppendMulti(ctx, key, []sierradb.NewEvent{
			{StreamID: a, Name: "A0", ExpectedVersion: sierradb.ExpectEmpty},
			{StreamID: a, Name: "A1", ExpectedVersion: sierradb.ExpectVersion(0)},
			{StreamID: b, Name: "B0", ExpectedVersion: sierradb.ExpectEmpty},
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.PartitionKey != key || len(res.Events) != 3 || res.LastPartitionSequence != res.FirstPartitionSequence+2 {
			t.Fatalf("result %+v", res)
		}
		if res.Events[1].StreamID != a || res.Events[1].StreamVersion != 1 || res.Events[2].StreamVersion != 0 ||
			res.Events[2].PartitionSequence != res.FirstPartitionSequence+2 {
			t.Fatalf("events %+v", res.Events)
		}
		// The streams are bound to key: reading them needs it. SierraDB
		// confirms events asynchronously, so a read right after the
		// reply may briefly see a prefix of the transaction.
		waitVersion(t, c, a, key, 1)
		// All or nothing: the third event's expectation fails, so the
		// first two are not written either.
		_, err = c.AppendMulti(ctx, key, []sierradb.NewEvent{
			{StreamID: b, Name: "B1", ExpectedVersion: sierradb.ExpectVersion(0)},
			{StreamID: a, Name: "A2", ExpectedVersion: sierradb.ExpectVersion(1)},
			{StreamID: a, Name: "A3", ExpectedVersion: sierradb.ExpectVersion(7)},
		})
		var wv *sierradb.WrongExpectedVersionError
		if !errors.As(err, &wv) || !wv.Parsed || wv.StreamID != a || wv.Current != 2 || wv.PartitionKey != key {
			t.Fatalf("conflict error %#v", err)
		}
		if exp, ok := wv.Expected.Exact(); !ok || exp != 7 {
			t.Fatalf("parsed expected %s", wv.Expected)
		}
		if v, err := c.StreamVersion(ctx, b, sierradb.WithPartitionKey(key)); err != nil || v != 0 {
			t.Fatalf("a failed multi-append wrote stream b: version %d, %v", v, err)
		}
		// The server's own check, which no visibility lag can fool: an
		// append expecting b at 0 and a at 1 succeeds only if neither B1
		// nor A2 was written.
		if _, err := c.AppendMulti(ctx, key, []sierradb.NewEvent{
			{StreamID: b, Name: "B1", ExpectedVersion: sierradb.ExpectVersion(0)},
			{StreamID: a, Name: "A2", ExpectedVersion: sierradb.ExpectVersion(1)},
		}); err != nil {
			t.Fatalf("a failed multi-append left a trace: %v", err)
		}
	})
}

func TestErrors(t *testing.T) {
	eachTarget(t, func(t *testing.T, c *sierradb.Client) {
		ctx := ctxT(t)
		s := streamName("err")
		_, err := c.Append(ctx, sierradb.NewEvent{StreamID: s, Name: "E"})
		if !errors.Is(err, sierradb.ErrInvalidArgument) || !strings.Contains(err.Error(), "strict versioning") {
			t.Fatalf("append without expected version: %v", err)
		}
		if sierradb.IsRetryable(err) {
			t.Fatal("an invalid argument is retryable")
		}
		if _, err := c.Append(ctx, sierradb.NewEvent{StreamID: s, Name: "E", ExpectedVersion: sierradb.ExpectEmpty}); err != nil {
			t.Fatal(err)
		}
		_, err = c.Append(ctx, sierradb.NewEvent{StreamID: s, Name: "E", ExpectedVersion: sierradb.ExpectEmpty})
		var wv *sierradb.WrongExpectedVersionError
		if !errors.Is(err, sierradb.ErrWrongExpectedVersion) || !errors.As(err, &wv) || wv.Current != 0 || !wv.Expected.IsEmpty() || wv.StreamID != s {
			t.Fatalf("conflict: %#v", err)
		}
		var se *sierradb.ServerError
		if !errors.As(err, &se) || se.Code != sierradb.CodeWrongVersion {
			t.Fatalf("conflict is not a WRONGVER server error: %v", err)
		}
		// Client-side checks happen before anything is sent.
		_, err = c.Append(ctx, sierradb.NewEvent{StreamID: strings.Repeat("x", 65), Name: "E", ExpectedVersion: sierradb.ExpectEmpty})
		var ise *sierradb.InvalidStreamIDError
		if !errors.As(err, &ise) {
			t.Fatalf("oversize stream id: %v", err)
		}
		// A stream is bound to its first partition key. (SierraDB checks
		// the binding per storage bucket, partition mod 4; a key in the
		// same bucket is refused by both servers.)
		_, err = c.Append(ctx, sierradb.NewEvent{StreamID: s, Name: "E", ExpectedVersion: sierradb.ExpectEmpty}, sierradb.WithPartitionKey(sameBucketKey(s)))
		if !errors.As(err, &se) || se.Code != sierradb.CodeDBOpFailed {
			t.Fatalf("append with another partition key: %v", err)
		}
		// A foreign event id without the partition hash is refused.
		bad := sierradb.WithPartitionHash(uuid.New(), sierradb.PartitionHash(sierradb.StreamPartitionKey(s))+1)
		if _, err := c.Append(ctx, sierradb.NewEvent{StreamID: streamName("x"), Name: "E", ID: bad, ExpectedVersion: sierradb.ExpectEmpty}); err == nil {
			t.Fatal("an event id without the partition hash was accepted")
		}
	})
}

func TestPingHello(t *testing.T) {
	eachTarget(t, func(t *testing.T, c *sierradb.Client) {
		ctx := ctxT(t)
		if err := c.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		info, err := c.Hello(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Server != "sierradb" || info.Version != "0.3.1" || info.NumPartitions != 32 || info.PeerID == "" {
			t.Fatalf("hello %+v", info)
		}
		n, err := c.PartitionCount(ctx)
		if err != nil || n != 32 {
			t.Fatalf("PartitionCount = %d, %v", n, err)
		}
	})
}

func TestClosedClient(t *testing.T) {
	c, err := sierradb.New(sierradb.Config{Addr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := c.Ping(t.Context()); !errors.Is(err, sierradb.ErrClosed) {
		t.Fatalf("Ping after Close: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	err := sierradb.Config{Addr: "nope", PoolSize: -1, DialTimeout: -1}.Validate()
	for _, want := range []string{"Addr", "PoolSize", "DialTimeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Validate() = %v, want a problem with %s", err, want)
		}
	}
	if _, err := sierradb.New(sierradb.Config{Addr: "nope"}); err == nil {
		t.Fatal("New accepted an invalid config")
	}
}

func TestIsRetryable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{sierradb.ParseServerError("TIMEOUT write operation timed out"), true},
		{sierradb.ParseServerError("MAILBOXFULL full"), true},
		{sierradb.ParseServerError("INVALIDARG nope"), false},
		{sierradb.ParseServerError("WRONGVER current stream version is 1 but expected 0 for partition key 00403391-1bdb-5c3c-be1f-53b4376518e3 and stream id s"), false},
		{sierradb.ErrClosed, false},
		{errors.New("boom"), false},
	}
	for _, tt := range tests {
		if got := sierradb.IsRetryable(tt.err); got != tt.want {
			t.Errorf("IsRetryable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// sameBucketKey returns a random partition key in the same SierraDB storage
// bucket (partition mod 4) as the stream's default key, but another
// partition.
func sameBucketKey(stream string) uuid.UUID {
	p := sierradb.PartitionID(sierradb.StreamPartitionKey(stream), 32)
	for {
		k := uuid.New()
		if q := sierradb.PartitionID(k, 32); q%4 == p%4 && q != p {
			return k
		}
	}
}
