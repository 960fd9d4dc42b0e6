package main

import (
	"os"
	"strings"
	"testing"

	"github.com/esmill/esmill/internal/leakcheck"
)

// TestParse reads `go test -bench -count 2` output with log lines in
// between, pairs the runs in order and strips GOMAXPROCS.
func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m)) }

func TestParse(t *testing.T) {
	out := `goos: linux
BenchmarkX/a/batch=10-2   	       1	 100 ns/op	  2000 events/s
some log line
BenchmarkX/b/batch=10-2   	       1	 200 ns/op	  1000 events/s
BenchmarkX/a/batch=10-2   	       1	 100 ns/op	  3000 events/s
BenchmarkX/b/batch=10-2   	       1	 200 ns/op	  1000 events/s
PASS
`
	res := map[string]*result{}
	if err := parse(strings.NewReader(out), res); err != nil {
		t.Fatal(err)
	}
	a, b := res["BenchmarkX/a/batch=10"], res["BenchmarkX/b/batch=10"]
	if a == nil || b == nil {
		t.Fatalf("names: %v", res)
	}
	if got := a.Metrics["events/s"]; len(got) != 2 || got[0] != 2000 || got[1] != 3000 {
		t.Fatalf("a events/s = %v", got)
	}
	st, ok := compare(a.Metrics["events/s"], b.Metrics["events/s"], false)
	if !ok || st.median != 2.5 || st.lo != 2 || st.hi != 3 || st.runs != 2 || st.measured != 2500 {
		t.Fatalf("compare = %+v", st)
	}
	st, ok = compare(a.Metrics["ns/op"], b.Metrics["ns/op"], true)
	if !ok || st.median != 2 {
		t.Fatalf("compare ns/op = %+v, %v", st, ok)
	}
	if _, ok := compare(nil, b.Metrics["events/s"], false); ok {
		t.Fatal("a missing side compared")
	}
}
