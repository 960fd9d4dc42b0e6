//go:build linux

package clustertest

// The death of a partition's coordinator on SierraDB 0.3.1: the client
// fails over, the subscriptions move to the new coordinator, the executor
// keeps running commands; what the server loses of acknowledged appends is
// counted and reported as a known difference
// (TestKnownDifferenceCoordinatorDeathFreezesPartition).

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/internal/sierracluster"
	"github.com/esmill/esmill/sierradb"
)

// Counter is the executor test's entity: it counts Increment commands.
type Counter struct{ N int }

type Incremented struct {
	By int `cbor:"by"`
}

func (Incremented) EventName() string { return "Incremented" }

type Increment struct{}

func (Increment) CommandName() string { return "Increment" }

var counters = aggregate.MustDefine[Counter, string]("ctr",
	aggregate.On(func(c *Counter, e Incremented) { c.N += e.By }),
	aggregate.Handle(func(c Counter, _ Increment, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		return aggregate.Events(Incremented{By: 1}), nil
	}),
)

// commander runs Increment commands one after another on a few entities
// through an executor with a cluster client of its own, retrying a failed
// command with the same command id (so that it applies once), and records
// when each succeeded.
type commander struct {
	prefix string
	ents   *aggregate.Entities[Counter, string]

	mu        sync.Mutex
	succeeded map[string]int // entity -> commands that succeeded
	failures  int
	lastErr   map[string]string // entity -> last error
	stuck     int               // entities whose last command failed
	okTimes   []time.Time
	wg        sync.WaitGroup
	stop      chan struct{}
}

func startCommander(t *testing.T, c *sierracluster.Cluster, prefix string) *commander {
	x, err := aggregate.NewExecutor(newClusterClient(t, c), aggregate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	cm := &commander{prefix: prefix, ents: aggregate.Bind(x, counters), succeeded: map[string]int{}, lastErr: map[string]string{}, stop: make(chan struct{})}
	cm.wg.Add(1)
	go cm.run()
	t.Cleanup(cm.halt)
	return cm
}

func (cm *commander) halt() {
	select {
	case <-cm.stop:
	default:
		close(cm.stop)
	}
	cm.wg.Wait()
}

// commanderEntities is how many entities the commander works on, one
// command at a time, round robin: a command that failed is sent again
// (same command id) on the entity's next turn, so that an entity whose
// partition SierraDB froze does not stop the others.
const commanderEntities = 8

func (cm *commander) run() {
	defer cm.wg.Done()
	pending := make([]string, commanderEntities) // command id to send again, per entity
	next := 0
	for k := 0; ; k++ {
		e := k % commanderEntities
		id := fmt.Sprintf("%s-%d", cm.prefix, e)
		cmdID := pending[e]
		if cmdID == "" {
			cmdID = fmt.Sprintf("%s-cmd-%d", cm.prefix, next)
			next++
		}
		select {
		case <-cm.stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), appendTimeout)
		_, err := cm.ents.Execute(ctx, id, Increment{}, aggregate.WithCommandID(cmdID))
		cancel()
		cm.mu.Lock()
		if err == nil {
			cm.succeeded[id]++
			cm.okTimes = append(cm.okTimes, time.Now())
			pending[e] = ""
			delete(cm.lastErr, id)
		} else {
			cm.failures++
			cm.lastErr[id] = err.Error()
			pending[e] = cmdID
		}
		cm.stuck = 0
		for _, p := range pending {
			if p != "" {
				cm.stuck++
			}
		}
		cm.mu.Unlock()
		if err != nil {
			select {
			case <-cm.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// gap is the longest time without a successful command after from.
func (cm *commander) gap(from, to time.Time) (time.Duration, int) {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	prev, longest, n := from, time.Duration(0), 0
	for _, at := range cm.okTimes {
		if at.Before(from) || at.After(to) {
			continue
		}
		n++
		longest = max(longest, at.Sub(prev))
		prev = at
	}
	return max(longest, to.Sub(prev)), n
}

// check compares each entity's events with the commands that succeeded.
func (cm *commander) check(t *testing.T, ctx context.Context, client *sierradb.Client) (lost, twice int) {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	for id, n := range cm.succeeded {
		stored := 0
		for _, err := range client.ScanAll(ctx, counters.StreamID(id), 0) {
			if err != nil {
				t.Fatal(err)
			}
			stored++
		}
		switch {
		case stored < n:
			lost += n - stored
		case stored > n:
			twice += stored - n
		}
	}
	return lost, twice
}

func (cm *commander) successes() int {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	return len(cm.okTimes)
}

// TestKillCoordinator SIGKILLs the node coordinating every partition of a
// 3-node cluster (the node every client sends its commands to) under the
// load of 8 writers and an executor, then restarts it.
func TestKillCoordinator(t *testing.T) {
	c := sierracluster.Start(t, sierracluster.Config{Nodes: 3})
	ctx := testCtx(t, 4*time.Minute)
	r := newRun(t, c)
	coord := coordinators(t, ctx, r.client)
	victim := c.Node(coord[0])
	t.Logf("coordinators: %v; the victim is node %d", coord, victim.Index)

	cm := startCommander(t, c, r.prefix+"-ctr")
	w := r.writers("coord")
	w.waitAcks(t, time.Time{}, 200, time.Minute)
	for cm.successes() < 20 {
		time.Sleep(10 * time.Millisecond)
	}
	at := time.Now()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	w.waitAcks(t, at, 200, time.Minute)
	deadline := time.Now().Add(time.Minute)
	for {
		if _, n := cm.gap(at, time.Now()); n >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the executor's commands did not work again within a minute of the coordinator's death")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmdGap, _ := cm.gap(at, time.Now())
	outGap := w.longestGap(at, time.Now())
	bctx, cancel := context.WithTimeout(ctx, formAgain)
	err := victim.Restart(bctx)
	cancel()
	if err != nil {
		t.Logf("KNOWN DIFFERENCE: node %d back, but the cluster did not form again within %s: %v", victim.Index, formAgain, err)
	}
	w.waitAcks(t, time.Now(), 200, time.Minute)
	w.halt()
	cm.halt()
	t.Logf("kill of coordinator node %d: writers: %s; longest time without an acknowledged append: %s while it was down, %s from the kill to the end",
		victim.Index, w.summary(), outGap.Round(time.Millisecond), w.longestGap(at, time.Now()).Round(time.Millisecond))
	t.Logf("executor: commands failed over in %s (longest time without a successful command after the kill), %d failed attempts retried",
		cmdGap.Round(time.Millisecond), cm.failures)
	if cm.stuck > 0 {
		t.Logf("KNOWN DIFFERENCE: %d of %d entities' commands still failed at the end (partitions frozen by the coordinator's death, "+
			"TestKnownDifferenceCoordinatorDeathFreezesPartition); last errors: %v", cm.stuck, commanderEntities, cm.lastErr)
	}
	lost, twice := cm.check(t, ctx, r.client)
	t.Logf("executor: %d commands applied twice, %d acknowledged commands whose event is not readable", twice, lost)
	if twice != 0 {
		t.Errorf("%d commands applied twice", twice)
	}
	t.Logf("client: %+v", r.client.ClusterStats())
	r.verifyKnown(ctx, "coordinator kill")
	if r.consumers.client.ClusterStats().LegMoves == 0 {
		t.Error("the consumers' subscriptions did not move off the dead coordinator")
	}
	if lost != 0 {
		t.Logf("KNOWN DIFFERENCE: the executor's acknowledged commands lost with the coordinator (TestKnownDifferenceCoordinatorDeathFreezesPartition)")
	}
}

// verifyKnown verifies a phase in which SierraDB may lose acknowledged
// appends: losses and events no longer readable are reported as known
// differences; the consumers must still not be given an event twice, nor
// miss a readable one unless their subscription diverged (DivergedError).
func (r *run) verifyKnown(ctx context.Context, phase string) {
	t := r.t
	readable := map[uuid.UUID]sierradb.Event{}
	lost, wrong := 0, 0
	for _, w := range r.all {
		got, l, x := w.stored(t, ctx, 5*time.Second)
		for id, ev := range got {
			readable[id] = ev
		}
		lost += l
		wrong += x
	}
	t.Logf("%s: verification: %d readable events, %d acknowledged appends lost, %d read with another event at their version", phase, len(readable), lost, wrong)
	if lost != 0 || wrong != 0 {
		t.Logf("KNOWN DIFFERENCE: acknowledged appends lost with the coordinator (TestKnownDifferenceCoordinatorDeathFreezesPartition)")
	}
	proj, group := r.consumers.settle(t, readable, 30*time.Second)
	t.Logf("%s: projection: %s", phase, proj)
	t.Logf("%s: consumer group: %s", phase, group)
	t.Logf("%s: the consumers' subscriptions moved %d times", phase, r.consumers.client.ClusterStats().LegMoves)
	diverged := errors.Is(r.consumers.runner.Err(), sierradb.ErrDiverged)
	if diverged {
		t.Logf("KNOWN DIFFERENCE: the projection stopped: %v", r.consumers.runner.Err())
	}
	// A stream read can return events past the partition's confirmed
	// head, which froze with the coordinator's death; a subscription
	// delivers only up to that head.
	heads, err := r.client.PartitionSequences(ctx, partitionsOf(readable))
	if err != nil {
		t.Fatal(err)
	}
	unconfirmed := 0
	for _, ev := range readable {
		if int64(ev.PartitionSequence) > heads[ev.PartitionID] {
			unconfirmed++
		}
	}
	if unconfirmed > 0 {
		t.Logf("KNOWN DIFFERENCE: %d events readable in their streams lie past their partition's confirmed head, so no subscription delivers them "+
			"(TestKnownDifferenceCoordinatorDeathFreezesPartition)", unconfirmed)
	}
	for name, x := range map[string]tally{"projection": proj, "consumer group": group} {
		if x.Dup != 0 {
			t.Errorf("%s: %s: %d events given twice", phase, name, x.Dup)
		}
		if x.Lost > unconfirmed && !diverged {
			t.Errorf("%s: %s: %d readable events never given, %d of them past the confirmed head", phase, name, x.Lost, unconfirmed)
		}
		if x.Gone != 0 {
			t.Logf("KNOWN DIFFERENCE: %s: %s: %d events given that the cluster no longer has", phase, name, x.Gone)
		}
	}
}

func partitionsOf(evs map[uuid.UUID]sierradb.Event) []uint16 {
	seen := map[uint16]bool{}
	var out []uint16
	for _, ev := range evs {
		if !seen[ev.PartitionID] {
			seen[ev.PartitionID] = true
			out = append(out, ev.PartitionID)
		}
	}
	return out
}
