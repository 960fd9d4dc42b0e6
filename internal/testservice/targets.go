package testservice

import (
	"testing"

	"github.com/esmill/esmill/sierradb/embedded"
)

// Target is a SierraDB server that a test runs against.
type Target struct {
	// Name is "embedded" or "sierradb".
	Name string
	// Real is true for the real SierraDB.
	Real bool
	// Addr starts (or finds) the server and returns its address.
	Addr func(t testing.TB) string
}

// SierraTargets are the embedded server (a fresh one per call of Addr) and
// the real SierraDB (shared by the test binary; skipped without the binary
// unless CI=true).
func SierraTargets() []Target {
	return []Target{
		{Name: "embedded", Addr: func(t testing.TB) string { return embedded.RunT(t).Addr() }},
		{Name: "sierradb", Real: true, Addr: func(t testing.TB) string { return RequireSierraDB(t) }},
	}
}

// EachSierra runs f as a subtest against every target.
func EachSierra(t *testing.T, f func(t *testing.T, tg Target, addr string)) {
	t.Helper()
	for _, tg := range SierraTargets() {
		t.Run(tg.Name, func(t *testing.T) { f(t, tg, tg.Addr(t)) })
	}
}
