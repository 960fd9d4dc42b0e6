package sierradb

import (
	"errors"
	"testing"
)

func TestParseWrongVersion(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		parsed  bool
		current int64
		want    string
		stream  string
	}{
		{"exact", "current stream version is 4 but expected 2 for partition key 00403391-1bdb-5c3c-be1f-53b4376518e3 and stream id acct-1", true, 4, "2", "acct-1"},
		{"empty", "current stream version is empty but expected 0 for partition key 00403391-1bdb-5c3c-be1f-53b4376518e3 and stream id s", true, -1, "0", "s"},
		{"keyword", "current stream version is 1 but expected empty for partition key 00403391-1bdb-5c3c-be1f-53b4376518e3 and stream id a and stream id b", true, 1, "empty", "a and stream id b"},
		{"changed text", "the stream moved on", false, -1, "any", ""},
		{"bad number", "current stream version is x but expected 2 for partition key 00403391-1bdb-5c3c-be1f-53b4376518e3 and stream id s", false, -1, "any", ""},
		{"bad key", "current stream version is 1 but expected 2 for partition key zzz and stream id s", false, -1, "any", ""},
		{"empty text", "", false, -1, "any", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := serverError("WRONGVER " + tt.text)
			var wv *WrongExpectedVersionError
			if !errors.As(err, &wv) || !errors.Is(err, ErrWrongExpectedVersion) {
				t.Fatalf("%v is not a wrong expected version", err)
			}
			if wv.Parsed != tt.parsed || wv.Current != tt.current || wv.Expected.String() != tt.want || wv.StreamID != tt.stream {
				t.Fatalf("parsed %+v", wv)
			}
			if err.Error() == "" {
				t.Fatal("empty message")
			}
		})
	}
}

func FuzzParseServerError(f *testing.F) {
	f.Add("WRONGVER current stream version is 4 but expected 2 for partition key 00403391-1bdb-5c3c-be1f-53b4376518e3 and stream id acct-1")
	f.Add("INVALIDARG unknown command 'X'")
	f.Add("the event id must embed the partition hash")
	f.Fuzz(func(t *testing.T, text string) {
		err := serverError(text)
		if err.Error() == "" {
			t.Fatal("empty error text")
		}
		var wv *WrongExpectedVersionError
		if errors.As(err, &wv) && wv.Parsed && wv.StreamID == "" && wv.Server.Message == "" {
			t.Fatalf("parsed an empty message: %+v", wv)
		}
	})
}

func TestForwardedWrongVersion(t *testing.T) {
	const text = "REMOTEOPFAILED remote operation failed: remote operation failed: current stream version is 5 but expected 2 " +
		"for partition key 00403391-1bdb-5c3c-be1f-53b4376518e3 and stream id acct-1"
	err := serverError(text)
	var wv *WrongExpectedVersionError
	if !errors.As(err, &wv) || !errors.Is(err, ErrWrongExpectedVersion) {
		t.Fatalf("%v is not a wrong expected version", err)
	}
	if !wv.Parsed || wv.Current != 5 || wv.Expected.String() != "2" || wv.StreamID != "acct-1" {
		t.Fatalf("parsed %+v", wv)
	}
	if wv.Server.Code != CodeRemoteOpFailed {
		t.Fatalf("server error %+v, want the REMOTEOPFAILED reply", wv.Server)
	}
	// Any other forwarded failure stays a server error, and a cluster
	// client fails it over.
	other := serverError("REMOTEOPFAILED remote operation failed: dial failure")
	if errors.Is(other, ErrWrongExpectedVersion) || !failoverWorthy(other) {
		t.Fatalf("%v: conflict %v, failover %v", other, errors.Is(other, ErrWrongExpectedVersion), failoverWorthy(other))
	}
	if failoverWorthy(err) || failoverWorthy(serverError("INVALIDARG bad")) {
		t.Fatal("a conflict or an invalid argument must not fail over")
	}
}
