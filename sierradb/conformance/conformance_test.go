package conformance_test

import (
	"os"
	"testing"

	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb/conformance"
	"github.com/esmill/esmill/sierradb/embedded"
)

func TestMain(m *testing.M) { os.Exit(testservice.Main(m)) }

// TestRealServer runs the suite against SierraDB 0.3.1: skipped without the
// binary, required under CI=true.
func TestRealServer(t *testing.T) {
	conformance.Run(t, conformance.Config{Addr: testservice.RequireSierraDB(t), Server: conformance.Real})
}

// TestEmbedded runs the suite against the embedded server, in memory and
// in directory mode.
func TestEmbedded(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		conformance.Run(t, conformance.Config{Addr: embedded.RunT(t).Addr(), Server: conformance.Embedded})
	})
	t.Run("directory", func(t *testing.T) {
		srv := embedded.RunT(t, embedded.Config{Dir: t.TempDir()})
		conformance.Run(t, conformance.Config{Addr: srv.Addr(), Server: conformance.Embedded})
	})
}
