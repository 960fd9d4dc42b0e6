//go:build linux

package sierracluster

// Facts about SierraDB 0.3.1 on a healthy cluster, as a client sees them.
// Each test asserts what was found, so it fails if the server changes;
// docs/cluster.md cites them by name.

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFactsFiveNodes runs the steady-state facts on 5 nodes with
// replication factor 3, where no node holds every partition.
func TestFactsFiveNodes(t *testing.T) {
	c := Start(t, Config{Nodes: 5, ReplicationFactor: 3})
	t.Logf("5 nodes (RF 3) formed in %s (nodes started again: %d)", c.FormedIn, c.Rejoins())
	t.Run("HelloAndNoTopologyCommand", func(t *testing.T) { factHello(t, c) })
	t.Run("OwnershipMatchesStaticAssignment", func(t *testing.T) { factOwnership(t, c) })
	t.Run("PartitionSubscriptionOnNonHolderIsSilent", func(t *testing.T) { factSilentPartitionSub(t, c) })
	t.Run("AnyNodeServesAnyPartition", func(t *testing.T) { factAnyNodeServes(t, c) })
	t.Run("OneCoordinatorPerPartition", func(t *testing.T) { factCoordinator(t, c) })
	t.Run("ReadAfterWriteAcrossNodes", func(t *testing.T) { factReadAfterWrite(t, c) })
}

// TestFactsThreeNodes runs them on 3 nodes, where every node holds every
// partition.
func TestFactsThreeNodes(t *testing.T) {
	c := Start(t, Config{Nodes: 3})
	t.Logf("3 nodes formed in %s (nodes started again: %d)", c.FormedIn, c.Rejoins())
	t.Run("OwnershipMatchesStaticAssignment", func(t *testing.T) { factOwnership(t, c) })
	t.Run("OneCoordinatorPerPartition", func(t *testing.T) { factCoordinator(t, c) })
	t.Run("ReadAfterWriteAcrossNodes", func(t *testing.T) { factReadAfterWrite(t, c) })
}

// factHello: HELLO names the server, its version, a peer id per node and
// the partition count, nothing about the cluster; no command reports
// membership or ownership.
func factHello(t *testing.T, c *Cluster) {
	ctx := testCtx(t, 30*time.Second)
	seen := map[string]bool{}
	for _, n := range c.Nodes() {
		conn := dial(t, ctx, n)
		v, err := conn.Do(ctx, "HELLO", "3")
		if err != nil {
			t.Fatal(err)
		}
		m := asMap(v)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if strings.Join(keys, ",") != "num_partitions,peer_id,server,version" {
			t.Errorf("node %d HELLO keys %v", n.Index, keys)
		}
		if m["server"] != "sierradb" || m["version"] != "0.3.1" || m["num_partitions"] != int64(32) {
			t.Errorf("node %d HELLO %v", n.Index, m)
		}
		id := asString(m["peer_id"])
		if id == "" || seen[id] {
			t.Errorf("node %d peer id %q not unique", n.Index, id)
		}
		seen[id] = true
		for _, cmd := range [][]string{{"INFO"}, {"INFO", "CLUSTER"}, {"INFO", "REPLICATION"}, {"CLUSTER", "NODES"}, {"CLUSTER", "SLOTS"}, {"CLUSTER", "SHARDS"}} {
			_, err := conn.Do(ctx, cmd...)
			var e *Error
			if !errors.As(err, &e) || e.Code != "INVALIDARG" {
				t.Errorf("node %d %v: want INVALIDARG, got %v", n.Index, cmd, err)
			}
		}
	}
}

// factOwnership: EPSUB * on a node delivers exactly the partitions that
// node holds by the static assignment (Cluster.Owners), history and live,
// and never an event of a partition it does not hold.
func factOwnership(t *testing.T, c *Cluster) {
	ctx := testCtx(t, 60*time.Second)
	conn := dial(t, ctx, c.Node(0))
	prefix := fmt.Sprintf("own-%d", time.Now().UnixNano())
	appendAll := func(round string) {
		for p := range 32 {
			if _, err := appendTo(ctx, conn, c.StreamIn(prefix+"-"+round, p), "empty"); err != nil {
				t.Fatalf("append to partition %d: %v", p, err)
			}
		}
	}
	appendAll("history")
	subs := make([]*subscription, len(c.Nodes()))
	for i, n := range c.Nodes() {
		subs[i] = subscribe(t, ctx, n, "*", "FROM", "0")
	}
	appendAll("live")
	// A replica delivers a partition's latest event live only once the
	// next one is written (TestKnownDifferenceReplicaLiveTrailsByOne).
	appendAll("flush")
	total := 0
	for i, sub := range subs {
		want := map[string]bool{}
		var held []int
		for p := range 32 {
			if c.Holds(i, p) {
				held = append(held, p)
				want[c.StreamIn(prefix+"-history", p)] = true
				want[c.StreamIn(prefix+"-live", p)] = true
			}
		}
		got, err := sub.collect(ctx, func(e event) bool {
			delete(want, e.Stream)
			return len(want) == 0
		})
		if err != nil {
			t.Fatalf("node %d: %v; still missing %v", i, err, want)
		}
		sub.stop()
		var parts []int
		for _, e := range got {
			if strings.HasPrefix(e.Stream, prefix+"-") && !slices.Contains(parts, e.Partition) {
				parts = append(parts, e.Partition)
			}
		}
		slices.Sort(parts)
		if !slices.Equal(parts, held) {
			t.Errorf("node %d: EPSUB * delivered partitions %v, holds %v", i, parts, held)
		}
		total += len(parts)
	}
	rf := c.Config().EffectiveReplicationFactor()
	if total != 32*rf {
		t.Errorf("the nodes' EPSUB * cover %d partition copies, want 32×%d", total, rf)
	}
	t.Logf("every node's EPSUB * covered exactly the partitions it holds, history and live; %d copies of 32 partitions", total)
}

// factSilentPartitionSub: EPSUB naming a partition the node does not hold
// is accepted and never delivers anything; the node does not forward it.
func factSilentPartitionSub(t *testing.T, c *Cluster) {
	ctx := testCtx(t, 60*time.Second)
	n := c.Node(4)
	var notHeld, held int = -1, -1
	for p := range 32 {
		if c.Holds(4, p) && held < 0 {
			held = p
		}
		if !c.Holds(4, p) && notHeld < 0 {
			notHeld = p
		}
	}
	prefix := fmt.Sprintf("silent-%d", time.Now().UnixNano())
	sub := subscribe(t, ctx, n, fmt.Sprintf("%d,%d", notHeld, held), "FROM", "0")
	conn := dial(t, ctx, c.Node(0))
	missed := c.StreamIn(prefix, notHeld)
	marker := c.StreamIn(prefix+"-marker", held)
	if _, err := appendTo(ctx, conn, missed, "empty"); err != nil {
		t.Fatal(err)
	}
	// Wait until the first event is readable through the node itself, so
	// it was confirmed before the marker was written.
	sconn := dial(t, ctx, n)
	waitFor(t, ctx, "the event through node 4", func() error {
		evs, err := scanStream(ctx, sconn, missed)
		if err == nil && len(evs) == 0 {
			err = errors.New("not yet")
		}
		return err
	})
	// Node 4 is no partition's coordinator, so the marker comes through
	// live only once the next event of its partition is written
	// (TestKnownDifferenceReplicaLiveTrailsByOne).
	if _, err := appendTo(ctx, conn, marker, "empty"); err != nil {
		t.Fatal(err)
	}
	if _, err := appendTo(ctx, conn, marker, "0"); err != nil {
		t.Fatal(err)
	}
	got, err := sub.collect(ctx, func(e event) bool { return e.Stream == marker })
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range got {
		if e.Stream == missed {
			t.Errorf("node 4 delivered an event of partition %d, which it does not hold", notHeld)
		}
	}
	t.Logf("EPSUB %d,%d on node 4 (holds %d only): the marker arrived, partition %d's earlier event did not", notHeld, held, held, notHeld)
}

// factAnyNodeServes: a node that holds no replica of a partition forwards
// appends and reads (EAPPEND, ESCAN, ESVER, EPSCAN, EPSEQ, EGET) to one
// that does.
func factAnyNodeServes(t *testing.T, c *Cluster) {
	ctx := testCtx(t, 60*time.Second)
	prefix := fmt.Sprintf("serve-%d", time.Now().UnixNano())
	for _, n := range c.Nodes() {
		p := -1
		for q := range 32 {
			if !c.Holds(n.Index, q) {
				p = q
				break
			}
		}
		conn := dial(t, ctx, n)
		s := c.StreamIn(prefix+"-"+strconv.Itoa(n.Index), p)
		ev, err := appendTo(ctx, conn, s, "empty")
		if err != nil {
			t.Fatalf("append through non-holder node %d: %v", n.Index, err)
		}
		if ev.Partition != p {
			t.Fatalf("partition %d, want %d", ev.Partition, p)
		}
		waitFor(t, ctx, "the forwarded reads", func() error {
			evs, err := scanStream(ctx, conn, s)
			if err != nil || len(evs) != 1 || evs[0].ID != ev.ID {
				return fmt.Errorf("ESCAN: %v %v", evs, err)
			}
			if v, err := conn.Do(ctx, "ESVER", s); err != nil || v != int64(0) {
				return fmt.Errorf("ESVER: %v %v", v, err)
			}
			if v, err := conn.Do(ctx, "EPSEQ", strconv.Itoa(p)); err != nil || asInt(v) < ev.Seq {
				return fmt.Errorf("EPSEQ: %v %v", v, err)
			}
			evs, err = scanPartition(ctx, conn, p)
			if err != nil || !slices.ContainsFunc(evs, func(e event) bool { return e.ID == ev.ID }) {
				return fmt.Errorf("EPSCAN: %v", err)
			}
			v, err := conn.Do(ctx, "EGET", ev.ID)
			if err != nil || asString(asMap(v)["event_id"]) != ev.ID {
				return fmt.Errorf("EGET: %v %v", v, err)
			}
			return nil
		})
	}
}

// factCoordinator: every partition has exactly one coordinator, one of its
// holders; a conflicting append sent to it answers WRONGVER, sent to any
// other node it answers REMOTEOPFAILED with WRONGVER's text
// (TestKnownDifferenceForwardedWrongVersion). The coordinator is the
// longest-running holder, so one node coordinates every partition it holds.
func factCoordinator(t *testing.T, c *Cluster) {
	ctx := testCtx(t, 60*time.Second)
	coord, count := coordinators(t, ctx, c)
	per := map[int]int{}
	for p := range coord {
		if count[p] != 1 {
			t.Errorf("partition %d: %d nodes answered WRONGVER, want 1", p, count[p])
			continue
		}
		if !c.Holds(coord[p], p) {
			t.Errorf("partition %d coordinated by node %d, which does not hold it", p, coord[p])
		}
		per[coord[p]]++
	}
	t.Logf("partitions coordinated per node: %v", per)
	// The first node started is the oldest: it coordinates all it holds.
	// (alive_since has one-second resolution; the harness starts nodes one
	// after the other, ~1 s apart, so node 0 is strictly the oldest unless
	// two starts fell in the same second.)
	for p := range coord {
		if c.Holds(0, p) && coord[p] != 0 {
			t.Logf("partition %d held by node 0 but coordinated by node %d (same-second start)", p, coord[p])
		}
	}
}

// factReadAfterWrite: an append acknowledged by the coordinator is not
// always readable at once on the other replicas (they learn the
// confirmation asynchronously); it becomes readable everywhere soon after.
// The test measures how often a read right after the reply misses it, and
// the longest time until every node returns it.
func factReadAfterWrite(t *testing.T, c *Cluster) {
	ctx := testCtx(t, 2*time.Minute)
	coord, _ := coordinators(t, ctx, c)
	const p = 0
	conns := make([]*Conn, len(c.Nodes()))
	for i, n := range c.Nodes() {
		conns[i] = dial(t, ctx, n)
	}
	stream := c.StreamIn(fmt.Sprintf("raw-%d", time.Now().UnixNano()), p)
	const rounds = 100
	missed := make([]int, len(conns))
	var maxLag time.Duration
	for i := range rounds {
		expected := "empty"
		if i > 0 {
			expected = strconv.Itoa(i - 1)
		}
		ev, err := appendTo(ctx, conns[coord[p]], stream, expected)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		acked := time.Now()
		for j, conn := range conns {
			visible := func() bool {
				v, err := conn.Do(ctx, "ESVER", stream)
				return err == nil && v != nil && asInt(v) >= ev.Version
			}
			if visible() {
				continue
			}
			missed[j]++
			waitFor(t, ctx, fmt.Sprintf("version %d on node %d", ev.Version, j), func() error {
				if visible() {
					return nil
				}
				return errors.New("not yet")
			})
			maxLag = max(maxLag, time.Since(acked))
		}
	}
	var roles []string
	for j := range conns {
		role := "replica"
		switch {
		case j == coord[p]:
			role = "coordinator"
		case !c.Holds(j, p):
			role = "non-holder (forwards reads)"
		}
		roles = append(roles, fmt.Sprintf("node %d %s: %d/%d missed", j, role, missed[j], rounds))
	}
	t.Logf("read right after an acknowledged append: %s; longest until visible everywhere: %s", strings.Join(roles, "; "), maxLag)
}
