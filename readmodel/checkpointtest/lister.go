package checkpointtest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/esmill/esmill/readmodel"
)

// ListerStore is a store that names its projections.
type ListerStore[T any] interface {
	readmodel.Store[T]
	readmodel.Lister
}

// RunLister checks a [readmodel.Lister] on an empty store: Projections
// names the projections with checkpoints or parked events, sorted, and
// forgets a reset one.
func RunLister[T any](t *testing.T, s ListerStore[T]) {
	t.Helper()
	ctx := context.Background()
	if names, err := s.Projections(ctx); err != nil || len(names) != 0 {
		t.Fatalf("empty store: %v, %v", names, err)
	}
	commit := func(name string, park bool) {
		tx, err := s.Begin(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		var adv []readmodel.Advance
		if park {
			err = tx.Park(ctx, readmodel.ParkedEvent{Position: readmodel.Position{Partition: 1}, StreamID: "a-1", Name: "E",
				Cause: readmodel.CauseHandler, Reason: "test", ParkedAt: time.Now().UTC()})
		} else {
			adv = []readmodel.Advance{{Partition: 0, Prev: -1, Next: 3}}
		}
		if err == nil {
			err = tx.Commit(ctx, adv)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	commit("zeta", false)
	commit("alpha@v2", true)
	commit("beta", false)
	if names, err := s.Projections(ctx); err != nil || !slices.Equal(names, []string{"alpha@v2", "beta", "zeta"}) {
		t.Fatalf("Projections = %v, %v", names, err)
	}
	if err := s.Reset(ctx, "beta", nil); err != nil {
		t.Fatal(err)
	}
	if names, err := s.Projections(ctx); err != nil || !slices.Equal(names, []string{"alpha@v2", "zeta"}) {
		t.Fatalf("after Reset(beta): %v, %v", names, err)
	}
}
