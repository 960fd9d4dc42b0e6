//go:build linux

package sierracluster

// SierraDB 0.3.1 cluster defects, each pinned with a reproduction. A test
// here passes while the defect is there and fails once the server behaves
// as documented, so docs/cluster.md can be updated. Each logs a line
// starting with KNOWN DIFFERENCE.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestKnownDifferenceForwardedWrongVersion: a version conflict detected by
// the coordinator reaches the client as WRONGVER only when the client sent
// the append to the coordinator itself; through any other node it comes
// back as REMOTEOPFAILED with WRONGVER's text (and, two hops away, the
// prefix twice). A client must recognise both (IsVersionConflict).
func TestKnownDifferenceForwardedWrongVersion(t *testing.T) {
	c := Start(t, Config{Nodes: 3})
	ctx := testCtx(t, time.Minute)
	coord, _ := coordinators(t, ctx, c)
	p := 5
	s := c.StreamIn(fmt.Sprintf("kd-wrongver-%d", time.Now().UnixNano()), p)
	boss := dial(t, ctx, c.Node(coord[p]))
	if _, err := appendTo(ctx, boss, s, "empty"); err != nil {
		t.Fatal(err)
	}
	_, err := appendTo(ctx, boss, s, "empty")
	var e *Error
	if !errors.As(err, &e) || e.Code != "WRONGVER" || !strings.HasPrefix(e.Msg, "current stream version is 0 but expected empty") {
		t.Fatalf("through the coordinator: %v", err)
	}
	other := dial(t, ctx, c.Node((coord[p]+1)%3))
	_, err = appendTo(ctx, other, s, "empty")
	if !errors.As(err, &e) || e.Code != "REMOTEOPFAILED" || !strings.HasPrefix(e.Msg, "remote operation failed: current stream version is 0 but expected empty") {
		t.Fatalf("through another node: want REMOTEOPFAILED with WRONGVER's text, got %v", err)
	}
	t.Logf("KNOWN DIFFERENCE: forwarded version conflict: %v", err)
}

// TestKnownDifferenceReplicaLiveTrailsByOne: a subscription on a node that
// holds a partition but does not coordinate it receives the partition's
// latest event only when the next one is written, although the node
// already serves that event to reads. On the coordinator, live events
// arrive at once.
func TestKnownDifferenceReplicaLiveTrailsByOne(t *testing.T) {
	c := Start(t, Config{Nodes: 5, ReplicationFactor: 3})
	ctx := testCtx(t, time.Minute)
	coord, _ := coordinators(t, ctx, c)
	// A node that coordinates partition q and is a plain replica of p.
	x, p, q := -1, -1, -1
	for n := range 5 {
		p, q = -1, -1
		for part := range 32 {
			if coord[part] == n && q < 0 {
				q = part
			}
			if c.Holds(n, part) && coord[part] != n && p < 0 {
				p = part
			}
		}
		if p >= 0 && q >= 0 {
			x = n
			break
		}
	}
	if x < 0 {
		t.Fatalf("no node both coordinates and replicates a partition: %v", coord)
	}
	prefix := fmt.Sprintf("kd-trail-%d", time.Now().UnixNano())
	sub := subscribe(t, ctx, c.Node(x), fmt.Sprintf("%d,%d", p, q), "FROM", "0")
	conn := dial(t, ctx, c.Node(coord[p]))
	xconn := dial(t, ctx, c.Node(x))
	first := c.StreamIn(prefix+"-p", p)
	if _, err := appendTo(ctx, conn, first, "empty"); err != nil {
		t.Fatal(err)
	}
	// Node x serves the event to reads (its own copy) ...
	waitFor(t, ctx, "the event in node x's copy", func() error {
		if v, err := xconn.Do(ctx, "ESVER", first); err != nil || v != int64(0) {
			return fmt.Errorf("ESVER %v %v", v, err)
		}
		return nil
	})
	// ... and a later event of a partition x coordinates comes through live.
	marker := c.StreamIn(prefix+"-q", q)
	if _, err := appendTo(ctx, dial(t, ctx, c.Node(x)), marker, "empty"); err != nil {
		t.Fatal(err)
	}
	got, err := sub.collect(ctx, func(e event) bool { return e.Stream == marker })
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range got {
		if e.Stream == first {
			t.Fatalf("node %d delivered partition %d's event before the next one was written: the defect is gone", x, p)
		}
	}
	// The next event of partition p releases the first.
	if _, err := appendTo(ctx, conn, first, "0"); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.collect(ctx, func(e event) bool { return e.Stream == first && e.Version == 0 }); err != nil {
		t.Fatal(err)
	}
	t.Logf("KNOWN DIFFERENCE: on node %d (replica of partition %d, coordinator of %d) the live event of partition %d came only after the next one was written, while partition %d's later event came at once", x, p, q, p, q)
}

// TestKnownDifferenceNodeWithoutBuckets: a node whose index gives it no
// bucket (index ≥ bucket.count + replication factor − 1, e.g. a 7th node
// with the default 4 buckets and RF 3) panics at start (exit status 101).
// It needs no other node: the panic comes before any networking (mDNS is
// off; the cluster listener is on loopback). Config.Validate rejects such
// clusters.
func TestKnownDifferenceNodeWithoutBuckets(t *testing.T) {
	bin := binaryOrSkip(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sierra.toml")
	if err := os.WriteFile(conf, []byte("[network]\nmdns = false\n[replication]\nfactor = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 30*time.Second)
	cmd := exec.CommandContext(ctx, bin, "-c", conf, "--dir", filepath.Join(dir, "data"),
		"--client-address", "127.0.0.1:0", "--cluster-address", "/ip4/127.0.0.1/tcp/0", "-n", "7", "-i", "6")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 101 || !strings.Contains(string(out), "assertion failed: !bucket_ids.is_empty()") {
		t.Fatalf("node 6 of 7 with 4 buckets: want a panic (exit 101), got %v:\n%s", err, out)
	}
	if err := (Config{Nodes: 7, ReplicationFactor: 3}).Validate(); err == nil {
		t.Error("Config.Validate accepts 7 nodes with 4 buckets and RF 3")
	}
	t.Log("KNOWN DIFFERENCE: a node without buckets panics: assertion failed: !bucket_ids.is_empty()")
}

func binaryOrSkip(t *testing.T) string {
	Require(t)
	cfg := Config{}
	if err := cfg.setDefaults(); err != nil {
		unavailable(t, "%v", err)
	}
	return cfg.Binary
}

// TestKnownDifferenceCoordinatorDeathFreezesPartition: when the
// coordinator is SIGKILLed right after acknowledging appends, the new
// coordinator either does not have the last acknowledged append (a
// conflict reports an older stream version), or goes on acknowledging
// appends that do not become readable on every survivor: the partition's
// confirmed position (EPSEQ, and with it ESCAN, EPSCAN and subscriptions)
// stays where it was on at least one of them, often on both. The defect
// does not show on every partition every time (in one run partition 0
// alone came through intact), so the test writes to 8 partitions the
// victim coordinates, round robin, and requires it on at least one, in
// one of up to 3 clusters.
func TestKnownDifferenceCoordinatorDeathFreezesPartition(t *testing.T) {
	// Skip (or, under CI, fail) here: a skipped attempt shows nothing.
	Require(t)
	for attempt := 1; attempt <= 3; attempt++ {
		shown := 0
		t.Run(fmt.Sprintf("attempt%d", attempt), func(t *testing.T) { shown = freezeAttempt(t) })
		if shown > 0 || t.Failed() {
			return
		}
	}
	t.Fatalf("acknowledged appends after the coordinator's death became readable on both survivors in 3 clusters: the defect is gone")
}

// freezeAttempt kills the coordinator of a new 3-node cluster and returns
// on how many partitions the defect showed.
func freezeAttempt(t *testing.T) int {
	c := Start(t, Config{Nodes: 3})
	ctx := testCtx(t, 2*time.Minute)
	coord, _ := coordinators(t, ctx, c)
	boss := coord[0]
	a, b := (boss+1)%3, (boss+2)%3
	var parts []int
	for p, n := range coord {
		if n == boss && len(parts) < 8 {
			parts = append(parts, p)
		}
	}
	streams := map[int]string{}
	bconn := dial(t, ctx, c.Node(boss))
	for _, p := range parts {
		streams[p] = c.StreamIn(fmt.Sprintf("kd-freeze-%d-%d", time.Now().UnixNano(), p), p)
	}
	// Round robin, so that every partition has appends acknowledged just
	// before the kill (the ones the defect concerns).
	for i := range 5 {
		for _, p := range parts {
			if _, err := appendTo(ctx, bconn, streams[p], expectedAfter(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := c.Node(boss).Kill(); err != nil {
		t.Fatal(err)
	}
	aconn, bc := dial(t, ctx, c.Node(a)), dial(t, ctx, c.Node(b))
	last := map[int]event{}
	reproduced := 0
	for _, p := range parts {
		for i := 5; i < 10; i++ {
			ev, err := appendAfterKill(ctx, aconn, streams[p], i)
			if IsVersionConflict(err) && currentVersion(err) < i-1 {
				// The new coordinator does not have the last acknowledged
				// append(s) of the old one.
				t.Logf("KNOWN DIFFERENCE: after SIGKILL of coordinator node %d, which had acknowledged version %d of a stream in partition %d, the new coordinator reports: %v",
					boss, i-1, p, err)
				reproduced++
				break
			}
			if err != nil {
				t.Fatalf("partition %d: append %d after the kill: %v", p, i, err)
			}
			last[p] = ev
		}
	}
	visible := func(conn *Conn, p int) bool {
		v, err := conn.Do(ctx, "EPSEQ", strconv.Itoa(p))
		return err == nil && v != nil && asInt(v) >= last[p].Seq
	}
	// Bounded wait: a healthy replica shows it within ~100 ms (the
	// read-after-write facts); 10 s is far beyond that.
	frozen := map[int]bool{}
	for p := range last {
		frozen[p] = true
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && len(frozen) > 0 {
		for p := range frozen {
			if visible(aconn, p) && visible(bc, p) {
				delete(frozen, p)
			}
		}
		if reproduced == 0 && len(frozen) == 0 {
			t.Logf("acknowledged appends after the coordinator's death became readable on both survivors in all %d partitions", len(parts))
			return 0
		}
		time.Sleep(100 * time.Millisecond)
	}
	for p := range frozen {
		sa, _ := aconn.Do(ctx, "EPSEQ", strconv.Itoa(p))
		sb, _ := bc.Do(ctx, "EPSEQ", strconv.Itoa(p))
		t.Logf("KNOWN DIFFERENCE: after SIGKILL of coordinator node %d, appends to partition %d up to sequence %d were acknowledged; 10 s later EPSEQ is %v on node %d and %v on node %d",
			boss, p, last[p].Seq, sa, a, sb, b)
	}
	t.Logf("the defect showed on %d of %d partitions (%d with an older version, %d frozen)", reproduced+len(frozen), len(parts), reproduced, len(frozen))
	return reproduced + len(frozen)
}

// appendAfterKill appends version i-1's successor, retrying for up to 10 s
// while the survivors have not yet noticed the coordinator's death (errors
// other than a version conflict).
func appendAfterKill(ctx context.Context, c *Conn, stream string, i int) (event, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ev, err := appendTo(ctx, c, stream, expectedAfter(i))
		if err == nil || IsVersionConflict(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return ev, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func expectedAfter(i int) string {
	if i == 0 {
		return "empty"
	}
	return strconv.Itoa(i - 1)
}

// TestKnownDifferenceRestartedReplicaStaysBehind: a replica that was down
// while a partition was written does not reliably catch up after it
// restarts, not even once the partition is written again: its own copy
// (what reads and subscriptions on it serve) mostly stays at what it had
// when it died. Mostly: in 2 of 15 rounds by hand (and in one CI run) the
// restarted replica did catch up within 7 s. So the test runs up to three
// kill/restart rounds on the same replica, each on a stream of its own, and
// passes at the first round in which the replica stays behind for 10 s;
// only when it catches up in all three is the defect taken as gone.
func TestKnownDifferenceRestartedReplicaStaysBehind(t *testing.T) {
	c := Start(t, Config{Nodes: 3})
	ctx := testCtx(t, 3*time.Minute)
	coord, _ := coordinators(t, ctx, c)
	const p = 0
	boss := coord[p]
	victim := c.Node((boss + 1) % 3)
	bconn := dial(t, ctx, c.Node(boss))
	const rounds = 3
	for round := 1; round <= rounds; round++ {
		s := c.StreamIn(fmt.Sprintf("kd-behind-%d-%d", time.Now().UnixNano(), round), p)
		for i := range 5 {
			if _, err := appendTo(ctx, bconn, s, expectedAfter(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := victim.Kill(); err != nil {
			t.Fatal(err)
		}
		for i := 5; i < 10; i++ {
			if _, err := appendAfterKill(ctx, bconn, s, i); err != nil {
				t.Fatal(err)
			}
		}
		if err := victim.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		var last event
		for i := 10; i < 13; i++ {
			ev, err := appendAfterKill(ctx, bconn, s, i)
			if err != nil {
				t.Fatal(err)
			}
			last = ev
		}
		vconn := dial(t, ctx, victim)
		// SierraDB's own catch-up waits replication.catchup_timeout_ms (2 s)
		// for a gap; 10 s is well past it.
		deadline := time.Now().Add(10 * time.Second)
		var seq any
		caught := time.Duration(-1)
		for start := time.Now(); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			seq, _ = vconn.Do(ctx, "EPSEQ", strconv.Itoa(p))
			if seq != nil && asInt(seq) >= last.Seq {
				caught = time.Since(start)
				break
			}
		}
		if caught < 0 {
			t.Logf("KNOWN DIFFERENCE: round %d: restarted replica node %d: EPSEQ %v 10 s after the partition reached sequence %d", round, victim.Index, seq, last.Seq)
			return
		}
		t.Logf("round %d: the restarted replica node %d caught up to sequence %d within %s", round, victim.Index, last.Seq, caught.Round(time.Millisecond))
	}
	t.Fatalf("the restarted replica caught up in all %d rounds: the defect is gone", rounds)
}

// TestKnownDifferenceNoFallbackWhenCoordinatorUnreachable: a node that
// cannot reach a partition's coordinator (a partial partition: it still
// reaches the other replica) fails appends with REMOTEOPFAILED … dial
// failure instead of forwarding through the replica it can reach; the
// same append through that replica succeeds, or in some runs fails too,
// with "all replica nodes failed" (see the control below).
func TestKnownDifferenceNoFallbackWhenCoordinatorUnreachable(t *testing.T) {
	c := Start(t, Config{Nodes: 3})
	ctx := testCtx(t, 2*time.Minute)
	coord, _ := coordinators(t, ctx, c)
	const p = 0
	boss := c.Node(coord[p])
	s, a := c.Node((boss.Index+1)%3), c.Node((boss.Index+2)%3)
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := s.BlockPeer(ctx, boss); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.UnblockPeer(context.Background(), boss) })
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := c.waitJoined(jctx, []*Node{s, a})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	stream := c.StreamIn(fmt.Sprintf("kd-nofallback-%d", time.Now().UnixNano()), p)
	_, err = appendTo(ctx, dial(t, ctx, s), stream, "empty")
	var e *Error
	if !errors.As(err, &e) || e.Code != "REMOTEOPFAILED" || !strings.Contains(e.Msg, "dial failure") {
		t.Fatalf("append through node %d, cut from coordinator %d: want REMOTEOPFAILED dial failure, got %v", s.Index, boss.Index, err)
	}
	// The control, through node a, which reaches the coordinator: in
	// most runs it succeeds, but in some (3 of 8, then 1 of 8 runs by
	// hand on 2026-12-06, after a CI run failed on it) the partition
	// takes no append through a either, for as long as the cut lasts (90
	// attempts over 45 s all failed) with "all replica nodes failed to
	// process the write request". Either outcome is accepted; any other
	// fails the test.
	_, err = appendTo(ctx, dial(t, ctx, a), stream, "empty")
	var ae *Error
	switch {
	case err == nil:
	case errors.As(err, &ae) && ae.Code == "REMOTEOPFAILED" && strings.Contains(ae.Msg, "all replica nodes failed"):
		t.Logf("KNOWN DIFFERENCE: the same append through node %d, which reaches coordinator %d, failed too: %v", a.Index, boss.Index, err)
	default:
		t.Fatalf("the same append through node %d, which reaches coordinator %d: %v", a.Index, boss.Index, err)
	}
	t.Logf("KNOWN DIFFERENCE: node %d, which reaches replica %d but not coordinator %d: %v", s.Index, a.Index, boss.Index, e)
}

// TestKnownDifferenceCutOffCoordinatorComesBackStale: a coordinator cut off
// from the others is replaced after the heartbeat timeout; when its link is
// healed it is again the longest-running holder, so it coordinates again,
// from its own copy, which lacks what was written meanwhile: the stream's
// version goes back, and an append with the version the client was given
// fails.
func TestKnownDifferenceCutOffCoordinatorComesBackStale(t *testing.T) {
	c := Start(t, Config{Nodes: 3})
	ctx := testCtx(t, 2*time.Minute)
	coord, _ := coordinators(t, ctx, c)
	const p = 0
	boss := c.Node(coord[p])
	a := c.Node((boss.Index + 1) % 3)
	s := c.StreamIn(fmt.Sprintf("kd-stale-%d", time.Now().UnixNano()), p)
	bconn := dial(t, ctx, boss)
	for i := range 3 {
		if _, err := appendTo(ctx, bconn, s, expectedAfter(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := boss.CutOff(ctx); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	aconn := dial(t, ctx, a)
	for i := 3; i < 6; {
		_, err := appendTo(ctx, aconn, s, expectedAfter(i))
		if err == nil {
			i++
			continue
		}
		if IsVersionConflict(err) {
			t.Fatalf("append %d during the cut: %v", i, err)
		}
		if time.Since(cutAt) > time.Minute {
			t.Fatalf("no failover within a minute: %v", err)
		}
	}
	t.Logf("appends through node %d resumed %s after the cut", a.Index, time.Since(cutAt).Round(time.Millisecond))
	if err := boss.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitFormed(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := appendTo(ctx, aconn, s, expectedAfter(6))
	if err == nil {
		t.Fatal("the append after the heal succeeded: the defect is gone")
	}
	if !IsVersionConflict(err) || currentVersion(err) >= 5 {
		t.Fatalf("after the heal: want a conflict reporting a version below 5, got %v", err)
	}
	t.Logf("KNOWN DIFFERENCE: stream at version 5 before the heal; after it: %v", err)
}

// TestKnownDifferenceStuckCoordinator: when nodes join at the same time,
// a node can apply another node's ownership response that leaves the
// receiver out of its own replica map while keeping it in its list of live
// nodes; heartbeats do not repair that. If the node is a partition's
// coordinator, every append to that partition then fails on every node
// with "all replica nodes failed to process the write request" until the
// membership changes (WaitFormed restarts a node for that). It is a race:
// the test starts 5 nodes at once up to ESMILL_STUCK_ATTEMPTS times
// (default 3; about one start in six gets stuck here), pins the signature
// when it happens and checks that restarting a node ends it.
func TestKnownDifferenceStuckCoordinator(t *testing.T) {
	attempts := 3
	if v, err := strconv.Atoi(os.Getenv("ESMILL_STUCK_ATTEMPTS")); err == nil && v > 0 {
		attempts = v
	}
	Require(t)
	for attempt := 1; attempt <= attempts; attempt++ {
		ctx := testCtx(t, 2*time.Minute)
		c, err := newCluster(ctx, Config{Nodes: 5, ReplicationFactor: 3, StartTogether: true})
		if err != nil {
			t.Fatal(err)
		}
		stuck, detail := stuckAfterJoin(t, ctx, c)
		if !stuck {
			c.Close()
			continue
		}
		if err := c.repair(ctx); err != nil {
			c.Close()
			t.Fatal(err)
		}
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = c.WaitFormed(fctx)
		cancel()
		c.Close()
		if err != nil {
			t.Fatalf("restarting a node did not end the stuck state: %v", err)
		}
		t.Logf("KNOWN DIFFERENCE: start %d of 5 nodes at once got stuck: %s; restarting one node ended it", attempt, detail)
		return
	}
	t.Logf("not reproduced in %d starts of 5 nodes at once (a race; set ESMILL_STUCK_ATTEMPTS to try more)", attempts)
}

// stuckAfterJoin waits until the nodes have joined, then reports whether
// some partition refuses appends on every node with the stuck signature,
// still 3 s later.
func stuckAfterJoin(t *testing.T, ctx context.Context, c *Cluster) (bool, string) {
	if err := c.startNodes(ctx); err != nil {
		t.Fatal(err)
	}
	jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.waitJoined(jctx, c.nodes); err != nil {
		t.Fatalf("nodes did not join: %v", err)
	}
	check := func() (int, string) {
		keys := probeKeys(32)
		for p, key := range keys {
			all := true
			var last error
			for _, n := range c.Nodes() {
				conn, err := n.Dial(ctx)
				if err != nil {
					t.Fatal(err)
				}
				_, err = conn.Do(ctx, "EAPPEND", probeStream, "Probe", "PARTITION_KEY", key.String(), "EXPECTED_VERSION", "1000000000")
				conn.Close()
				if err == nil || !strings.Contains(err.Error(), "all replica nodes failed to process the write request") {
					all = false
					break
				}
				last = err
			}
			if all {
				return p, last.Error()
			}
		}
		return -1, ""
	}
	p, detail := check()
	if p < 0 {
		return false, ""
	}
	time.Sleep(3 * time.Second)
	if p2, _ := check(); p2 < 0 {
		return false, ""
	}
	return true, fmt.Sprintf("partition %d on every node: %s", p, detail)
}
