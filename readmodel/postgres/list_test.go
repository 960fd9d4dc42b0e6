package postgres_test

import (
	"testing"

	"github.com/esmill/esmill/readmodel/checkpointtest"
)

// Projections names the projections with checkpoints or parked events,
// sorted, and forgets a reset one.
func TestProjections(t *testing.T) {
	pool, _ := newSchema(t)
	checkpointtest.RunLister(t, newStore(t, pool))
}
