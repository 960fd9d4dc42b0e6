package readmodel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/esmill/esmill/readmodel"
)

// An admin made without handlers lists and skips, and refuses what needs
// the handlers: a replay, and a skip that would release held events.
func TestAdminWithoutHandlers(t *testing.T) {
	ctx := context.Background()
	st := newStore()
	park := []readmodel.ParkedEvent{
		{Position: readmodel.Position{Partition: 1, Sequence: 0}, StreamID: "a-1", Name: "E", Cause: readmodel.CauseHandler},
		{Position: readmodel.Position{Partition: 1, Sequence: 1}, StreamID: "a-1", Name: "E", Cause: readmodel.CauseHeld},
		{Position: readmodel.Position{Partition: 2, Sequence: 0}, StreamID: "b-1", Name: "E", Cause: readmodel.CauseHandler},
	}
	bt, err := st.Begin(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range park {
		ev.ParkedAt = time.Now().UTC()
		if err := bt.Park(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := bt.Commit(ctx, []readmodel.Advance{{Partition: 1, Prev: -1, Next: 1}, {Partition: 2, Prev: -1, Next: 0}}); err != nil {
		t.Fatal(err)
	}
	ad, err := readmodel.NewAdmin(readmodel.Config[tx]{Name: "p", Store: st})
	if err != nil {
		t.Fatalf("NewAdmin without handlers: %v", err)
	}
	if evs, err := ad.List(ctx); err != nil || len(evs) != 3 {
		t.Fatalf("List = %d events, %v; want 3", len(evs), err)
	}
	var nh *readmodel.NoHandlersError
	if _, err := ad.Replay(ctx, park[2].Position, "test", ""); !errors.Is(err, readmodel.ErrNoHandlers) || !errors.As(err, &nh) || nh.Held {
		t.Fatalf("Replay = %v, want a NoHandlersError for the replay", err)
	}
	if _, err := ad.Skip(ctx, park[0].Position, "test", ""); !errors.As(err, &nh) || !nh.Held {
		t.Fatalf("Skip of a stream's first parked event with a held one behind = %v, want a NoHandlersError (held)", err)
	}
	if _, err := ad.Skip(ctx, park[2].Position, "test", "bad data"); err != nil {
		t.Fatalf("Skip: %v", err)
	}
	evs, err := ad.List(ctx)
	if err != nil || len(evs) != 2 || evs[0].Position != park[0].Position || evs[1].Position != park[1].Position {
		t.Fatalf("after the skip: %v, %v; want the two events of a-1", evs, err)
	}
	if _, err := readmodel.NewAdmin(readmodel.Config[tx]{Name: "p"}); err == nil {
		t.Fatal("NewAdmin without a Store succeeded")
	}
}
