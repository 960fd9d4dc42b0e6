package sierradb_test

import (
	"testing"

	"github.com/esmill/esmill/sierradb/embedded"
)

// The embedded server is always a target; the real one is added in
// main_test.go.
func init() {
	targets = append([]target{{"embedded", func(t *testing.T) string { return embedded.RunT(t).Addr() }}}, targets...)
	benchTargets = append([]benchTarget{{"embedded", func(b *testing.B) string { return embedded.RunT(b).Addr() }}}, benchTargets...)
}
