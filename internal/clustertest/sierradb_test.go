//go:build linux

package clustertest

// The Done-when scenarios of the cluster issue on SierraDB 0.3.1: a
// projection and a Pub/Sub consumer group over all partitions, fed by 8
// writers through the cluster-aware client, on 3 nodes (RF 3: every node
// holds every partition) and on 5 nodes (RF 3: partitions spread), while a
// node that coordinates nothing is cut off and healed, then SIGKILLed and
// restarted. Every phase ends with counts: acknowledged appends lost, and
// events each consumer was given never, twice, or though no longer
// readable.

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/internal/sierracluster"
	"github.com/esmill/esmill/sierradb"
)

func newClusterClient(t *testing.T, c *sierracluster.Cluster) *sierradb.Client {
	t.Helper()
	cl, err := sierradb.New(sierradb.Config{Cluster: c.ClientConfig(),
		ReconnectMinBackoff: 10 * time.Millisecond, ReconnectMaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// coordinators probes (through the client) which node coordinates each
// partition.
func coordinators(t *testing.T, ctx context.Context, client *sierradb.Client) []int {
	t.Helper()
	if _, err := client.PartitionSequences(ctx, []uint16{0}); err != nil {
		t.Fatal(err)
	}
	return client.ClusterStats().Coordinators
}

// bystander returns the highest-indexed node that coordinates no
// partition: a plain replica.
func bystander(t *testing.T, n int, coord []int) int {
	t.Helper()
	for i := n - 1; i >= 0; i-- {
		if countOf(coord, i) == 0 {
			return i
		}
	}
	t.Fatalf("every node coordinates a partition: %v", coord)
	return -1
}

func countOf(xs []int, x int) int {
	k := 0
	for _, v := range xs {
		if v == x {
			k++
		}
	}
	return k
}

func TestThreeNodes(t *testing.T) { replicaScenarios(t, sierracluster.Config{Nodes: 3}) }

func TestFiveNodes(t *testing.T) {
	replicaScenarios(t, sierracluster.Config{Nodes: 5, ReplicationFactor: 3})
}

// run is one scenario run: a cluster, the writers' client, the consumers
// and every writer set started so far (their streams are verified
// together).
type run struct {
	t         *testing.T
	c         *sierracluster.Cluster
	client    *sierradb.Client
	prefix    string
	consumers *consumers
	all       []*writers
}

func newRun(t *testing.T, c *sierracluster.Cluster) *run {
	r := &run{t: t, c: c, client: newClusterClient(t, c), prefix: fmt.Sprintf("cl%d", time.Now().UnixNano()%1e9)}
	// The consumers have a client of their own, as another process would.
	r.consumers = startConsumers(t, newClusterClient(t, c), r.prefix)
	return r
}

// writers starts 8 writers on 4 streams each for phase name.
func (r *run) writers(name string) *writers {
	w := startWriters(r.t, r.client, writerStreams(r.prefix+"-"+name, 8, 4))
	r.all = append(r.all, w)
	return w
}

// verify checks every phase's streams and both consumers: no acknowledged
// append lost (when strict), and every readable event given exactly once.
func (r *run) verify(ctx context.Context, phase string, strict bool) {
	t := r.t
	readable := map[uuid.UUID]sierradb.Event{}
	lost, wrong := 0, 0
	for _, w := range r.all {
		got, l, x := w.stored(t, ctx, 10*time.Second)
		for id, ev := range got {
			readable[id] = ev
		}
		lost += l
		wrong += x
	}
	t.Logf("%s: verification: %d readable events, %d acknowledged appends lost, %d read with another event at their version", phase, len(readable), lost, wrong)
	proj, group := r.consumers.settle(t, readable, 60*time.Second)
	t.Logf("%s: projection: %s", phase, proj)
	t.Logf("%s: consumer group: %s", phase, group)
	if proj.Lost != 0 || group.Lost != 0 {
		proj, group = r.nudge(ctx, phase, readable)
	}
	if strict && (lost != 0 || wrong != 0) {
		t.Errorf("%s: %d acknowledged appends lost, %d replaced", phase, lost, wrong)
	}
	if proj.Lost != 0 || proj.Dup != 0 || proj.Gone != 0 {
		t.Errorf("%s: projection: %s", phase, proj)
	}
	if group.Lost != 0 || group.Dup != 0 || group.Gone != 0 {
		t.Errorf("%s: consumer group: %s", phase, group)
	}
}

// replicaScenarios runs, on one cluster: a phase without failure, a phase
// in which a plain replica is cut off and healed, and one in which the
// same replica is SIGKILLed and restarted (a replica that missed writes
// stays stale, TestKnownDifferenceRestartedReplicaStaysBehind, so a second
// replica disrupted later would leave partitions of 3 nodes without a
// quorum: the same node is the victim both times).
func replicaScenarios(t *testing.T, cfg sierracluster.Config) {
	c := sierracluster.Start(t, cfg)
	t.Logf("%d nodes formed in %s", cfg.Nodes, c.FormedIn.Round(time.Millisecond))
	ctx := testCtx(t, 5*time.Minute)
	r := newRun(t, c)
	coord := coordinators(t, ctx, r.client)
	victim := c.Node(bystander(t, cfg.Nodes, coord))
	t.Logf("coordinators: %v; the victim is node %d, a replica of %d partitions", coord, victim.Index, holds(c, victim.Index))

	// Steady: no failure.
	w := r.writers("steady")
	w.waitAcks(t, time.Time{}, 400, time.Minute)
	w.halt()
	t.Logf("steady: writers: %s", w.summary())
	r.verify(ctx, "steady", true)

	disrupt(t, ctx, r, "cut", victim)
	disrupt(t, ctx, r, "kill", victim)
	t.Logf("client: %+v", r.client.ClusterStats())
}

func holds(c *sierracluster.Cluster, i int) int {
	n := 0
	for p := range c.Config().EffectivePartitions() {
		if c.Holds(i, p) {
			n++
		}
	}
	return n
}

// formAgain bounds the wait for the cluster to form again after a node
// is back. SierraDB 0.3.1 sometimes does not (a node answers "max
// sub-streams reached" for minutes, docs/cluster.md); the writers then
// still run, which is what the phase measures.
const formAgain = 15 * time.Second

// disrupt runs a phase under load: 200 acknowledgements, the victim cut
// off (or SIGKILLed), 200 more, the victim healed (or restarted), 200
// more; then it reports the writers' error rate and the longest time
// without an acknowledgement, and verifies.
func disrupt(t *testing.T, ctx context.Context, r *run, how string, victim *sierracluster.Node) {
	w := r.writers(how)
	w.waitAcks(t, time.Time{}, 200, time.Minute)
	at := time.Now()
	switch how {
	case "cut":
		if err := victim.CutOff(ctx); err != nil {
			t.Fatal(err)
		}
	case "kill":
		if err := victim.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	w.waitAcks(t, at, 200, time.Minute)
	outGap := w.longestGap(at, time.Now())
	back := time.Now()
	bctx, cancel := context.WithTimeout(ctx, formAgain)
	var err error
	switch how {
	case "cut":
		if err = victim.Heal(ctx); err != nil {
			t.Fatal(err)
		}
		err = r.c.WaitFormed(bctx)
	case "kill":
		err = victim.Restart(bctx)
	}
	cancel()
	if err != nil {
		t.Logf("KNOWN DIFFERENCE: node %d back, but the cluster did not form again within %s: %v", victim.Index, formAgain, err)
	} else {
		t.Logf("%s: node %d back, cluster formed again in %s", how, victim.Index, time.Since(back).Round(time.Millisecond))
	}
	backAt := time.Now()
	w.waitAcks(t, backAt, 200, time.Minute)
	w.halt()
	t.Logf("%s of node %d: writers: %s; longest time without an acknowledged append: %s while out, %s from the %s to the end",
		how, victim.Index, w.summary(), outGap.Round(time.Millisecond), w.longestGap(at, time.Now()).Round(time.Millisecond), how)
	r.verify(ctx, how, true)
}

// nudge handles readable events a consumer was not given within the
// settle time. It lists them (describeMissing); when every one of them is
// confirmed (at or below its partition's confirmed head), it appends one
// event to each of their partitions, on a stream the consumers ignore, and
// settles again. SierraDB 0.3.1's coordinator broadcasts a partition's
// live events once per confirmed write, by reading the newly confirmed
// range from disk; what that read does not return waits for the
// partition's next confirmation (our reading of sierradb-cluster 0.3.1,
// confirmation/actor.rs; seen once in CI, 1 event of 3,858, in none of 26
// runs by hand). The client's live check
// (Config.LiveCheckInterval, 5 s) resubscribes past such a hold within the
// settle time; the nudge is left for what it does not catch, and tells a
// held event apart from a gap in esmill's subscription: an event a
// subscription skipped does not come after a later write.
func (r *run) nudge(ctx context.Context, phase string, readable map[uuid.UUID]sierradb.Event) (proj, group tally) {
	t := r.t
	missing, heads := r.describeMissing(ctx, phase, readable)
	parts := map[uint16]bool{}
	for _, ev := range missing {
		if int64(ev.PartitionSequence) > heads[ev.PartitionID] {
			t.Logf("%s: %s@%d lies past its partition's confirmed head: no subscription delivers it, and no nudge is tried", phase, ev.StreamID, ev.StreamVersion)
			return r.consumers.settle(t, readable, 0)
		}
		parts[ev.PartitionID] = true
	}
	for p := range parts {
		s := r.c.StreamIn(fmt.Sprintf("nudge%d", time.Now().UnixNano()), int(p))
		if _, err := r.client.Append(ctx, sierradb.NewEvent{StreamID: s, Name: "Nudged", ExpectedVersion: sierradb.ExpectEmpty}); err != nil {
			t.Logf("%s: nudge of partition %d: %v", phase, p, err)
		}
	}
	proj, group = r.consumers.settle(t, readable, 30*time.Second)
	t.Logf("%s: after a write to each of their %d partitions: projection: %s; consumer group: %s", phase, len(parts), proj, group)
	if proj.Lost == 0 && group.Lost == 0 {
		t.Logf("KNOWN DIFFERENCE: %d confirmed events came live only after their partition's next write (SierraDB's live feed held a partition's last event)", len(missing))
	}
	return proj, group
}

// describeMissing logs, for each readable event a consumer was never
// given (at most 20), its stream, version, partition and partition
// sequence, whether its append was acknowledged, and its partition's
// confirmed head now: an event past that head is one no subscription
// delivers yet.
func (r *run) describeMissing(ctx context.Context, phase string, readable map[uuid.UUID]sierradb.Event) (missing map[uuid.UUID]sierradb.Event, heads map[uint16]int64) {
	t := r.t
	var applied counts
	r.consumers.store.Read("counts", func(m counts) { applied = maps.Clone(m) })
	r.consumers.mu.Lock()
	given := maps.Clone(r.consumers.got)
	r.consumers.mu.Unlock()
	missing = map[uuid.UUID]sierradb.Event{}
	for id, ev := range readable {
		if applied[id] == 0 || given[id] == 0 {
			missing[id] = ev
		}
	}
	heads, err := r.client.PartitionSequences(ctx, partitionsOf(missing))
	if err != nil {
		t.Logf("%s: the confirmed heads of the missing events' partitions: %v", phase, err)
	}
	n := 0
	for id, ev := range missing {
		if n++; n > 20 {
			t.Logf("%s: %d more missing events not listed", phase, len(missing)-20)
			break
		}
		acked := false
		for _, w := range r.all {
			acked = acked || w.wasAcked(ev.StreamID, ev.StreamVersion, id)
		}
		t.Logf("%s: missing %s %s@%d (partition %d, sequence %d; confirmed head %d): acknowledged %t, applied %d, given to the group %d",
			phase, id, ev.StreamID, ev.StreamVersion, ev.PartitionID, ev.PartitionSequence, heads[ev.PartitionID], acked, applied[id], given[id])
	}
	return missing, heads
}
