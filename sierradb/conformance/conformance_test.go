package conformance_test

import (
	"os"
	"testing"

	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb/conformance"
)

func TestMain(m *testing.M) { os.Exit(testservice.Main(m)) }

// TestRealServer runs the suite against SierraDB 0.3.1: skipped without the
// binary, required under CI=true.
func TestRealServer(t *testing.T) {
	conformance.Run(t, conformance.Config{Addr: testservice.RequireSierraDB(t), Server: conformance.Real})
}
