package main_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/esmill/esmill/cmd/esmill/internal/shop"
	"github.com/esmill/esmill/esadmin"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/sierradb"
)

// A projection rebuilt by the program that registers it (testadmin
// projection rebuild) reports progress, from 0 to every event stored when
// it began, and ends with the read model its runner had built; esmill,
// which registers nothing, refuses.
func TestRebuild(t *testing.T) {
	esmill, admin := build(t, esmillPkg), build(t, testadminPkg)
	e := newEnv(t)
	// 4,000 deposits over 40 accounts, appended 100 per stream at once.
	for a := range 40 {
		id := e.id(fmt.Sprintf("r%d", a))
		stream := shop.Category + "-" + id
		batch := make([]sierradb.NewEvent, 100)
		for i := range batch {
			amount := int64((a*7+i)%9 + 1)
			name, payload, err := shop.Accounts.EncodeEvent(shop.Deposited{Amount: amount})
			if err != nil {
				t.Fatal(err)
			}
			batch[i] = sierradb.NewEvent{StreamID: stream, Name: name, Payload: payload, ExpectedVersion: sierradb.ExpectAfter(int64(i) - 1)}
			r := e.model[id]
			r.N++
			r.Total += amount
			e.model[id] = r
		}
		if _, err := e.client.AppendMulti(e.ctx, sierradb.StreamPartitionKey(stream), batch); err != nil {
			t.Fatal(err)
		}
	}
	r, err := readmodel.New(shop.Config(e.client, e.store, e.prefix, ""))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if err := r.Sync(e.ctx); err != nil {
		t.Fatal(err)
	}
	r.Close()
	e.checkModel("built by the runner")

	if res := e.run(esmill, "projection", "rebuild", "--yes", shop.Projection); res.code != 1 || !strings.Contains(res.stderr, "not registered") {
		t.Fatalf("esmill projection rebuild: exit %d, stderr %q; want 1, not registered", res.code, res.stderr)
	}
	if res := e.run(admin, "projection", "rebuild", shop.Projection); res.code != 2 || !strings.Contains(res.stderr, "--yes") {
		t.Fatalf("rebuild without --yes: exit %d, stderr %q; want 2, asking for --yes", res.code, res.stderr)
	}
	lines := strings.Split(strings.TrimSpace(e.ok(admin, "projection", "rebuild", "--yes", "--json", "--every", "20ms", shop.Projection)), "\n")
	var ps []esadmin.Progress
	for _, l := range lines {
		ps = append(ps, decode[esadmin.Progress](t, l))
	}
	first, last := ps[0], ps[len(ps)-1]
	if len(ps) < 2 || first.Done != 0 || first.Total < 4000 || !last.Finished || last.Done != last.Total || last.Total != first.Total {
		t.Fatalf("progress %+v", ps)
	}
	for i := 1; i < len(ps); i++ {
		if ps[i].Done < ps[i-1].Done || ps[i].Done > ps[i].Total {
			t.Fatalf("progress went from %+v to %+v", ps[i-1], ps[i])
		}
	}
	t.Logf("rebuild: %d progress lines, %d events, %s", len(ps), last.Total, last.Elapsed)
	e.checkModel("rebuilt")

	// Without --json: lines for a pipe.
	out := e.ok(admin, "projection", "rebuild", "--yes", shop.Projection)
	if !strings.Contains(out, "rebuild "+shop.Projection+": 0/") || !strings.Contains(out, "(100.0%)") || !strings.Contains(out, "done in") {
		t.Fatalf("rebuild printed:\n%s", out)
	}
	e.checkModel("rebuilt again")
	st, err := e.store.Checkpoints(e.ctx, shop.Projection)
	if err != nil || len(st) == 0 {
		t.Fatalf("checkpoints after the rebuild: %v, %v", st, err)
	}
}
