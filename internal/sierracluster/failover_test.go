//go:build linux

package sierracluster

// Facts about SierraDB 0.3.1 when a node dies or is cut off under load.

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// loadStreams returns 8 writers × 4 streams in partitions 0…15.
func loadStreams(c *Cluster, prefix string) [][]string {
	streams := make([][]string, 8)
	for i := range streams {
		for k := range 4 {
			p := (i*4 + k) % 16
			streams[i] = append(streams[i], c.StreamIn(fmt.Sprintf("%s-w%d-%d", prefix, i, k), p))
		}
	}
	return streams
}

// subCheck counts, in what a FROM 0 subscription delivered, the events
// delivered more than once and the partition sequences skipped.
func subCheck(evs []event) (dups, gaps int) {
	next := map[int]int64{}
	for _, e := range evs {
		want := next[e.Partition]
		switch {
		case e.Seq < want:
			dups++
		case e.Seq > want:
			gaps += int(e.Seq - want)
			next[e.Partition] = e.Seq + 1
		default:
			next[e.Partition] = e.Seq + 1
		}
	}
	return dups, gaps
}

// drain returns what a subscription has delivered so far.
func (s *subscription) drain() []event {
	var out []event
	for {
		select {
		case e := <-s.events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// mostCoordinating returns the node that coordinates the most partitions.
func mostCoordinating(coord []int) int {
	per := map[int]int{}
	best := 0
	for _, n := range coord {
		per[n]++
		if per[n] > per[best] {
			best = n
		}
	}
	return best
}

// TestFactsKillUnderLoad SIGKILLs a node while 8 writers append through
// all three nodes (failing over to the next node on any error), appends to
// other partitions while it is down, restarts it, and checks what was
// acknowledged against every replica and what the subscriptions delivered.
// The victim is either the node that coordinates the partitions or a
// replica.
func TestFactsKillUnderLoad(t *testing.T) {
	for _, role := range []string{"replica", "coordinator"} {
		t.Run(role, func(t *testing.T) {
			t.Parallel()
			disruptUnderLoad(t, role, "kill")
		})
	}
}

// TestFactsCutOffUnderLoad does the same with the victim cut off from the
// other nodes (link down) instead of killed, then healed.
func TestFactsCutOffUnderLoad(t *testing.T) {
	for _, role := range []string{"replica", "coordinator"} {
		t.Run(role, func(t *testing.T) {
			t.Parallel()
			disruptUnderLoad(t, role, "cut")
		})
	}
}

func disruptUnderLoad(t *testing.T, role, how string) {
	c := Start(t, Config{Nodes: 3})
	ctx := testCtx(t, 3*time.Minute)
	coord, _ := coordinators(t, ctx, c)
	boss := mostCoordinating(coord)
	victim := c.Node(boss)
	if role == "replica" {
		victim = c.Node((boss + 1) % 3)
	}
	other := c.Node(boss) // a node that stays in
	if role == "coordinator" {
		other = c.Node((boss + 1) % 3)
	}
	prefix := fmt.Sprintf("%s-%s-%d", how, role, time.Now().UnixNano())

	subs := make([]*subscription, 3)
	for i, n := range c.Nodes() {
		subs[i] = subscribe(t, ctx, n, "*", "FROM", "0")
	}
	l := startLoad(t, c, loadStreams(c, prefix))
	l.waitAcked(t, ctx, time.Now(), 100)

	at := time.Now()
	switch how {
	case "kill":
		if err := victim.Kill(); err != nil {
			t.Fatal(err)
		}
	case "cut":
		if err := victim.CutOff(ctx); err != nil {
			t.Fatal(err)
		}
	}
	l.waitAcked(t, ctx, at, 200)
	longest, recovered := l.recovery(at)
	t.Logf("%s of node %d (%s, coordinator of %d partitions): %d/8 writers appended again, the last after %s; longest pause of all appends: %s",
		how, victim.Index, role, countOf(coord, victim.Index), recovered, longest.Round(time.Millisecond), l.longestGap(at, time.Now()).Round(time.Millisecond))
	if how == "kill" {
		if ended, err := subs[victim.Index].ended(); !ended {
			t.Error("the subscription on the killed node did not end")
		} else {
			t.Logf("the subscription on the killed node ended: %v", err)
		}
	}
	during, _ := coordinators(t, ctx, c)
	t.Logf("coordinators while node %d is out: %v", victim.Index, summarize(during))

	// Partitions 16…23 are written only while the victim is out.
	downOnly := map[int]string{}
	oconn := dial(t, ctx, other)
	for p := 16; p < 24; p++ {
		s := c.StreamIn(prefix+"-out", p)
		if _, err := appendTo(ctx, oconn, s, "empty"); err != nil {
			t.Errorf("append to partition %d while node %d is out: %v", p, victim.Index, err)
			continue
		}
		downOnly[p] = s
	}

	// Bring the victim back, bounded: SierraDB does not always re-form
	// (a stuck coordinator that WaitFormed's repair cannot clear, or
	// "max sub-streams reached" from a node that forwarded through the
	// restart); that is reported, and the rest of the test still runs.
	backAt := time.Now()
	bctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	var backErr error
	switch how {
	case "kill":
		backErr = victim.Restart(bctx)
	case "cut":
		if err := victim.Heal(ctx); err != nil {
			t.Fatal(err)
		}
		backErr = c.WaitFormed(bctx)
	}
	cancel()
	if backErr != nil {
		t.Logf("KNOWN DIFFERENCE: node %d back, but the cluster did not form again within 60 s: %v", victim.Index, backErr)
	} else {
		t.Logf("node %d back and the cluster formed again in %s (nodes restarted to repair: %d)", victim.Index, time.Since(backAt).Round(time.Millisecond), c.Repairs())
	}
	// After the victim is back, the writers should go on; give them 10 s
	// for 200 appends (a healthy cluster needs about one), and report.
	backDone := time.Now()
	got := l.acksWithin(backDone, 200, 10*time.Second)
	t.Logf("after node %d is back: %d appends acknowledged in %s", victim.Index, got, time.Since(backDone).Round(time.Millisecond))
	if got < 200 {
		t.Logf("KNOWN DIFFERENCE: appends mostly fail after a cut-off coordinator returns (TestKnownDifferenceCutOffCoordinatorComesBackStale)")
		if role == "replica" && backErr == nil {
			t.Errorf("after the %s of a replica, only %d appends in 10 s", how, got)
		}
	}
	l.halt()
	t.Logf("writers: %s", l.summary())

	v := l.verify(t, ctx)
	t.Logf("verification: %s", v)
	// A killed coordinator can leave its partitions' holders disagreeing
	// on a sequence: the new coordinator accepted other appends at
	// sequences the dead one had acknowledged (the same defect as the
	// lost appends below; in CI, 5 partitions once). Anywhere else, and
	// duplicates always, are failures.
	if v.Dup != 0 || v.Diverged != 0 && !(role == "coordinator" && how == "kill") {
		t.Errorf("%s of the %s: %s", how, role, v)
	} else if v.Diverged != 0 {
		t.Logf("KNOWN DIFFERENCE: %d partitions' holders disagree on a sequence after the coordinator's death "+
			"(TestKnownDifferenceCoordinatorDeathFreezesPartition)", v.Diverged)
	}
	if v.Lost != 0 || v.Missing != 0 {
		t.Logf("KNOWN DIFFERENCE: acknowledged appends not readable on every replica " +
			"(TestKnownDifferenceCoordinatorDeathFreezesPartition, TestKnownDifferenceRestartedReplicaStaysBehind)")
	}

	if !victim.Running() {
		return
	}
	vconn := dial(t, ctx, victim)
	stale := 0
	for _, s := range downOnly {
		evs, err := scanStream(ctx, vconn, s) // a holder reads its own copy
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			stale++
		}
	}
	t.Logf("node %d's own copy lacks %d of %d partitions written only while it was out", victim.Index, stale, len(downOnly))

	for i, sub := range subs {
		dups, gaps := subCheck(sub.drain())
		t.Logf("EPSUB * FROM 0 on node %d: %d duplicates, %d skipped sequences", i, dups, gaps)
		if dups != 0 {
			t.Errorf("node %d's subscription delivered %d events twice", i, dups)
		}
	}
}

func countOf(xs []int, x int) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

// summarize maps node -> number of partitions coordinated.
func summarize(coord []int) map[int]int {
	m := map[int]int{}
	for _, n := range coord {
		m[n]++
	}
	return m
}
