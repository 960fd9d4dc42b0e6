package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/esmill/esmill/readmodel/checkpointtest"
)

// Projections names the projections with checkpoints or parked events,
// sorted, and forgets a reset one.
func TestProjections(t *testing.T) {
	checkpointtest.RunLister(t, open(t, filepath.Join(t.TempDir(), "db")))
}
