package esadmin_test

import (
	"os"
	"testing"

	"github.com/esmill/esmill/internal/leakcheck"
)

// TestMain fails the run when a test leaves a goroutine running.
func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m)) }
