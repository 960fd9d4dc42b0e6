package sierradb_test

import (
	"testing"

	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb/embedded"
)

// The embedded server is always a target; the real one is added in
// main_test.go. Benchmarks also run on "embedded-dir": cmd/sierradb-embedded
// in directory mode (fsync per append) in a process of its own, as a
// deployment runs it, which is what esbench compares with the real server.
func init() {
	targets = append([]target{{"embedded", func(t *testing.T) string { return embedded.RunT(t).Addr() }}}, targets...)
	benchTargets = append([]benchTarget{
		{"embedded", func(b *testing.B) string { return embedded.RunT(b).Addr() }},
		{"embedded-dir", func(b *testing.B) string { return testservice.EmbeddedProcess(b) }},
	}, benchTargets...)
}
