package checkpointtest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/esmill/esmill/readmodel"
)

func holdEntity[T any](c *readmodel.Config[T]) { c.Hold = readmodel.HoldEntity }

// parkedAt finds the parked event of a stream at a version.
func parkedAt(t testing.TB, evs []readmodel.ParkedEvent, stream string, version uint64) readmodel.ParkedEvent {
	t.Helper()
	for _, ev := range evs {
		if ev.StreamID == stream && ev.StreamVersion == version {
			return ev
		}
	}
	t.Fatalf("no parked event of %s v%d among %+v", stream, version, evs)
	return readmodel.ParkedEvent{}
}

func causes(evs []readmodel.ParkedEvent) map[string]readmodel.Cause {
	out := make(map[string]readmodel.Cause)
	for _, ev := range evs {
		out[fmt.Sprintf("%s/%d", ev.StreamID, ev.StreamVersion)] = ev.Cause
	}
	return out
}

func (s *suite[T]) listParked(t testing.TB, st readmodel.Store[T], proj string) []readmodel.ParkedEvent {
	t.Helper()
	evs, err := st.Parked(ctxT(t), proj)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// replayAndSkip: under HoldEntity, a parked event holds the later events
// of its stream; replaying it (once its handler is fixed) or skipping it
// applies them in order, each event exactly once, with the record of who
// did it and why; new events of the stream then apply at once (this case
// runs in every store's TestContract; tested: TestContract).
func (s *suite[T]) replayAndSkip(t *testing.T) {
	f := s.fixture(t)
	st := s.h.New(t)
	cat := f.typ.Category()
	fix, bad, blk := cat+"-fix", cat+"-bad", cat+"-blk"
	evs := f.generate(s.h.Events / 4)
	evs = append(evs,
		newEvent{stream: fix, ev: Deposited{Amount: 1}},                   // v0 applied
		newEvent{stream: fix, ev: Deposited{Amount: fixable}},             // v1 parked until fixed
		newEvent{stream: fix, ev: Deposited{Amount: 2}},                   // v2 held
		newEvent{stream: bad, name: "Deposited", raw: []byte{0xff, 0xfe}}, // v0 undecodable: skipped
		newEvent{stream: fix, ev: Withdrawn{Amount: 3}},                   // v3 held
		newEvent{stream: bad, ev: Deposited{Amount: 5}},                   // v1 held
		newEvent{stream: blk, ev: Deposited{Amount: fixable}},             // v0 parked until fixed
		newEvent{stream: blk, ev: Deposited{Amount: alwaysFails}},         // v1 held, then fails on release
		newEvent{stream: blk, ev: Deposited{Amount: 6}},                   // v2 held
	)
	evs = append(evs, f.generate(s.h.Events/4)...)
	f.append(t, evs)
	f.ref["bal/fix"], f.ref["n/fix"] = 1, 1

	r := f.runner(t, st, "replay", holdEntity)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	f.sync(t, r)
	// Other streams went on; fix stopped before its parked event.
	f.check(t, st, "replay")
	parked := s.listParked(t, st, "replay")
	want := map[string]readmodel.Cause{fix + "/1": readmodel.CauseHandler, fix + "/2": readmodel.CauseHeld,
		fix + "/3": readmodel.CauseHeld, bad + "/0": readmodel.CauseDecode, bad + "/1": readmodel.CauseHeld,
		blk + "/0": readmodel.CauseHandler, blk + "/1": readmodel.CauseHeld, blk + "/2": readmodel.CauseHeld}
	if got := causes(parked); len(got) != len(want) || !equalCauses(got, want) {
		t.Fatalf("parked = %v, want %v", got, want)
	}
	head, held2, held3 := parkedAt(t, parked, fix, 1), parkedAt(t, parked, fix, 2), parkedAt(t, parked, fix, 3)
	badHead, badHeld := parkedAt(t, parked, bad, 0), parkedAt(t, parked, bad, 1)
	if !strings.Contains(held2.Reason, head.Position.String()) {
		t.Errorf("held event's reason %q does not name %s", held2.Reason, head.Position)
	}

	ctx := ctxT(t)
	ad := r.Admin()
	if got, err := ad.Show(ctx, head.Position); err != nil || got.Cause != readmodel.CauseHandler || got.Reason == "" {
		t.Fatalf("Show = %+v, %v", got, err)
	}
	// A held event cannot jump the queue.
	var nf *readmodel.NotFirstError
	if _, err := ad.Replay(ctx, held2.Position, "alice", ""); !errors.Is(err, readmodel.ErrNotFirst) || !errors.As(err, &nf) || nf.First != head.Position {
		t.Fatalf("Replay(held) = %v, want ErrNotFirst naming %s", err, head.Position)
	}
	// Still broken: it stays parked, the failure recorded.
	var re *readmodel.ReplayError
	if _, err := ad.Replay(ctx, head.Position, "alice", "try"); !errors.As(err, &re) {
		t.Fatalf("Replay of a still failing event = %v, want a *ReplayError", err)
	}
	if got, err := ad.Show(ctx, head.Position); err != nil || got.Attempts != head.Attempts+1 {
		t.Fatalf("after a failed replay: %+v, %v; want attempts %d", got, err, head.Attempts+1)
	}
	f.check(t, st, "replay")

	// Fixed: replayed, and the held events after it applied in order.
	f.fixed.Store(true)
	out, err := r.Replay(ctx, head.Position, "alice", "fixed in v1.2")
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if !slices.Equal(out.Released, []readmodel.Position{held2.Position, held3.Position}) || out.Blocked != nil {
		t.Fatalf("Replay released %v (blocked %v), want %v and %v", out.Released, out.Blocked, held2.Position, held3.Position)
	}
	f.ref["bal/fix"], f.ref["n/fix"] = 1+fixable+2-3, 4
	f.check(t, st, "replay")

	// Skipped: dropped, and the event held behind it applied.
	out, err = r.Skip(ctx, badHead.Position, "ops", "corrupt payload, see ticket 12")
	if err != nil {
		t.Fatalf("Skip: %v", err)
	}
	if !slices.Equal(out.Released, []readmodel.Position{badHeld.Position}) {
		t.Fatalf("Skip released %v, want %v", out.Released, badHeld.Position)
	}
	f.ref["bal/bad"], f.ref["n/bad"] = 5, 1
	f.check(t, st, "replay")

	// A held event that fails on release stays parked, now first: the
	// events behind it stay held until it is resolved.
	blkHead, blkFails, blkHeld := parkedAt(t, parked, blk, 0), parkedAt(t, parked, blk, 1), parkedAt(t, parked, blk, 2)
	out, err = r.Replay(ctx, blkHead.Position, "alice", "fixed in v1.2")
	if err != nil || len(out.Released) != 0 || out.Blocked == nil || out.Blocked.Position != blkFails.Position || out.BlockedErr == nil {
		t.Fatalf("Replay = %+v, %v; want %s blocked", out, err, blkFails.Position)
	}
	if got := causes(s.listParked(t, st, "replay")); !equalCauses(got, map[string]readmodel.Cause{
		blk + "/1": readmodel.CauseHandler, blk + "/2": readmodel.CauseHeld}) {
		t.Fatalf("parked after a blocked release = %v", got)
	}
	f.ref["bal/blk"], f.ref["n/blk"] = fixable, 1
	f.check(t, st, "replay")
	if out, err = r.Skip(ctx, blkFails.Position, "ops", "never applies"); err != nil || !slices.Equal(out.Released, []readmodel.Position{blkHeld.Position}) {
		t.Fatalf("Skip = %+v, %v; want %s released", out, err, blkHeld.Position)
	}
	f.ref["bal/blk"], f.ref["n/blk"] = fixable+6, 2
	f.check(t, st, "replay")

	if p := s.listParked(t, st, "replay"); len(p) != 0 {
		t.Fatalf("still parked: %+v", p)
	}
	if _, err := ad.Replay(ctx, head.Position, "alice", ""); !errors.Is(err, readmodel.ErrNotParked) {
		t.Fatalf("second Replay = %v, want ErrNotParked", err)
	}

	resolved, err := ad.Resolved(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[readmodel.Position]readmodel.Resolution)
	for _, ev := range resolved {
		got[ev.Position] = ev.Resolution
	}
	for _, w := range []struct {
		pos      readmodel.Position
		action   readmodel.Action
		by, note string
	}{
		{head.Position, readmodel.Replayed, "alice", "fixed in v1.2"},
		{held2.Position, readmodel.Replayed, "alice", "held behind " + head.Position.String()},
		{held3.Position, readmodel.Replayed, "alice", "held behind " + head.Position.String()},
		{badHead.Position, readmodel.Skipped, "ops", "corrupt payload, see ticket 12"},
		{badHeld.Position, readmodel.Replayed, "ops", "which was skipped"},
	} {
		g, ok := got[w.pos]
		if !ok || g.Action != w.action || g.By != w.by || !strings.Contains(g.Note, w.note) || g.At.IsZero() {
			t.Errorf("resolution of %s = %+v (present %v), want %s by %s, note with %q", w.pos, g, ok, w.action, w.by, w.note)
		}
	}
	if len(resolved) != 8 {
		t.Errorf("Resolved has %d events, want 8", len(resolved))
	}

	// The streams are free: new events apply at once.
	f.append(t, []newEvent{{stream: fix, ev: Deposited{Amount: 10}}, {stream: bad, ev: Deposited{Amount: 10}}})
	f.ref["bal/fix"] += 10
	f.ref["n/fix"]++
	f.ref["bal/bad"] += 10
	f.ref["n/bad"]++
	f.sync(t, r)
	f.check(t, st, "replay")
	if p := s.listParked(t, st, "replay"); len(p) != 0 {
		t.Fatalf("new events were parked: %+v", p)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

func equalCauses(a, b map[string]readmodel.Cause) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}

// adminWithoutRunner: the admin of a projection that is not running (an
// admin tool, over a reopened store) replays a parked event and releases
// the held ones; the next runner finds the stream free.
func (s *suite[T]) adminWithoutRunner(t *testing.T) {
	f := s.fixture(t)
	st := s.h.New(t)
	fix := f.typ.Category() + "-fix"
	f.append(t, append(f.generate(20), newEvent{stream: fix, ev: Deposited{Amount: 1}},
		newEvent{stream: fix, ev: Deposited{Amount: fixable}}, newEvent{stream: fix, ev: Deposited{Amount: 2}}))
	f.ref["bal/fix"], f.ref["n/fix"] = 1, 1
	r := f.runner(t, st, "offline", holdEntity)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	f.sync(t, r)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	f.check(t, st, "offline")
	if s.h.Reopen != nil {
		st = s.h.Reopen(t, st)
	}
	head := parkedAt(t, s.listParked(t, st, "offline"), fix, 1)

	ad, err := readmodel.NewAdmin(readmodel.Config[T]{Name: "offline", Store: st, Handlers: f.handlers(), Client: f.client})
	if err != nil {
		t.Fatal(err)
	}
	f.fixed.Store(true)
	out, err := ad.Replay(ctxT(t), head.Position, "admin-cli", "fixed")
	if err != nil || len(out.Released) != 1 {
		t.Fatalf("Replay = %+v, %v; want one released", out, err)
	}
	f.ref["bal/fix"], f.ref["n/fix"] = 1+fixable+2, 3
	f.check(t, st, "offline")

	f.append(t, []newEvent{{stream: fix, ev: Deposited{Amount: 4}}})
	f.ref["bal/fix"] += 4
	f.ref["n/fix"]++
	r2 := f.runner(t, st, "offline", holdEntity)
	if err := r2.Start(); err != nil {
		t.Fatal(err)
	}
	f.sync(t, r2)
	f.check(t, st, "offline")
	if p := s.listParked(t, st, "offline"); len(p) != 0 {
		t.Fatalf("parked after the replay: %+v", p)
	}
}

// releasedElsewhere: while a runner holds a stream, another admin (as in
// another process) replays its parked event; the runner learns of it, and
// the stream's new events are applied in order, none out of context.
func (s *suite[T]) releasedElsewhere(t *testing.T) {
	f := s.fixture(t)
	st := s.h.New(t)
	fix := f.typ.Category() + "-fix"
	f.append(t, []newEvent{{stream: fix, ev: Deposited{Amount: 1}}, {stream: fix, ev: Deposited{Amount: fixable}},
		{stream: fix, ev: Deposited{Amount: 2}}})
	r := f.runner(t, st, "elsewhere", holdEntity)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	f.sync(t, r)
	head := parkedAt(t, s.listParked(t, st, "elsewhere"), fix, 1)
	ad, err := readmodel.NewAdmin(readmodel.Config[T]{Name: "elsewhere", Store: st, Handlers: f.handlers(), Client: f.client})
	if err != nil {
		t.Fatal(err)
	}
	f.fixed.Store(true)
	if _, err := ad.Replay(ctxT(t), head.Position, "other-process", "fixed"); err != nil {
		t.Fatalf("Replay: %v", err)
	}
	// New events of the stream, possibly held a moment by the runner
	// that has not yet learnt of the replay, then released in order.
	f.append(t, []newEvent{{stream: fix, ev: Deposited{Amount: 4}}, {stream: fix, ev: Withdrawn{Amount: 1}}})
	f.ref["bal/fix"], f.ref["n/fix"] = 1+fixable+2+4-1, 5
	f.sync(t, r)
	wait(t, "the stream's events to be released", time.Minute, func() bool {
		return len(s.listParked(t, st, "elsewhere")) == 0
	})
	f.check(t, st, "elsewhere")
	if err := r.Close(); err != nil {
		t.Fatalf("runner: %v", err)
	}
}
