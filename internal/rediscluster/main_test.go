package rediscluster

import (
	"os"
	"testing"

	"github.com/esmill/esmill/internal/testservice"
)

// TestMain fails the run when a test leaves a goroutine running.
func TestMain(m *testing.M) { os.Exit(testservice.Main(m)) }
