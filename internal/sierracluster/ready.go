//go:build linux

package sierracluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// The readiness probe reads the topology lines a node logs: at trace,
// "received heartbeat from ActorId(_, PEER) …" whenever a peer's heartbeat
// (every heartbeat interval) reaches it, which makes PEER active in its
// view; and the events that may drop a peer from the view again: a closed
// connection, a heartbeat timeout, or an ownership response (which replaces
// the whole view with the sender's). SierraDB 0.3.1 exposes membership
// nowhere else: no command reports it.
var (
	heartbeatLine = regexp.MustCompile(`received heartbeat from ActorId\(\d+, (\w+)\)`)
	closedLine    = regexp.MustCompile(`connection closed with (\w+)`)
	timedOutLine  = regexp.MustCompile(`node (\w+) timed out`)
	responseLine  = regexp.MustCompile(`received ownership response`)
)

// logFilter is the server log filter the harness runs nodes with unless
// Config.Log says otherwise: info, plus the topology behaviour's trace
// lines that the readiness probe reads.
const logFilter = "info,sierradb_topology::behaviour=trace"

// WaitFormed waits until the cluster has formed, or until ctx ends: every node
// is running and linked; each node has received a heartbeat from every
// other node's current process since anything last dropped that node from
// its view, and since the last Start or Restart of any node; and every node
// answers PING, HELLO and, for every partition, a one-event EPSCAN (which a
// node that holds no replica of the partition forwards to one that does)
// and an append whose version check must fail (which only a coordinator
// that sees a quorum of the partition's replicas gets to check).
// TestFormedMeansWritable shows that appends to every partition through
// every node then succeed at once and reach every replica.
//
// When every node has joined but the appends to some partition keep
// failing with "all replica nodes failed" for stuckTimeout, a coordinator
// has dropped itself from its own replica map
// (TestKnownDifferenceStuckCoordinator). WaitFormed then restarts the most
// recently started node (the youngest, which coordinates nothing while
// older holders live), which makes every node recompute its map, up to
// three times; Repairs counts these.
func (c *Cluster) WaitFormed(ctx context.Context) error {
	var last error
	var stuckSince time.Time
	repairs := 0
	for {
		err := c.formed(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() == nil || last == nil {
			last = err // keep the last error seen before ctx ended
		}
		if errors.Is(last, errStuck) {
			if stuckSince.IsZero() {
				stuckSince = time.Now()
			}
			if time.Since(stuckSince) > stuckTimeout && repairs < 3 {
				repairs++
				if err := c.repair(ctx); err != nil {
					return fmt.Errorf("SierraDB cluster stuck (%v), and restarting a node failed: %w", last, err)
				}
				stuckSince = time.Time{}
				continue
			}
		} else {
			stuckSince = time.Time{}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("SierraDB cluster not formed: %w; last check: %v", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) formed(ctx context.Context) error {
	if err := c.joined(ctx, c.nodes); err != nil {
		return err
	}
	keys := probeKeys(c.cfg.EffectivePartitions())
	for _, n := range c.nodes {
		if err := probe(ctx, n, keys); err != nil {
			return fmt.Errorf("node %d: %w", n.Index, err)
		}
	}
	return nil
}

// joined checks that members are running, linked, answer HELLO, and (when
// the log shows heartbeats) have heard each other's heartbeats since
// anything last changed their views.
func (c *Cluster) joined(ctx context.Context, members []*Node) error {
	peers := make([]string, len(members))
	for i, n := range members {
		if !n.Running() {
			return fmt.Errorf("node %d is not running (%v)", n.Index, n.exitErr())
		}
		n.mu.Lock()
		cut := n.cut
		n.mu.Unlock()
		if cut {
			return fmt.Errorf("node %d is cut off", n.Index)
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		id, err := n.PeerID(pctx)
		cancel()
		if err != nil {
			return fmt.Errorf("node %d: HELLO: %w", n.Index, err)
		}
		peers[i] = id
	}
	if !tracesHeartbeats(c.cfg.Log) {
		return nil
	}
	for i, n := range members {
		n.mu.Lock()
		from := n.startLog
		n.mu.Unlock()
		from = max(from, c.mark(n.Index))
		missing, err := unheard(n.log, from, peers, i)
		if err != nil {
			return err
		}
		if missing >= 0 {
			return fmt.Errorf("node %d has no heartbeat from node %d (%s) since it last changed its view",
				n.Index, members[missing].Index, peers[missing])
		}
	}
	return nil
}

// unheard scans a node's log from offset from and returns the index of a
// peer whose latest heartbeat line is missing or older than the latest line
// that may have dropped it from the node's view, or -1 if there is none.
func unheard(path string, from int64, peers []string, self int) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return 0, err
	}
	heard := map[string]int{}
	dropped := map[string]int{}
	response := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for line := 1; sc.Scan(); line++ {
		b := sc.Bytes()
		if m := heartbeatLine.FindSubmatch(b); m != nil {
			heard[string(m[1])] = line
		} else if m := closedLine.FindSubmatch(b); m != nil {
			dropped[string(m[1])] = line
		} else if m := timedOutLine.FindSubmatch(b); m != nil {
			dropped[string(m[1])] = line
		} else if responseLine.Match(b) {
			response = line
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	for i, p := range peers {
		if i == self {
			continue
		}
		h := heard[p]
		if h == 0 || h < dropped[p] || h < response {
			return i, nil
		}
	}
	return -1, nil
}

// probe checks one node: PING, and for every partition an EPSCAN and an
// append that must fail its version check.
func probe(ctx context.Context, n *Node, keys []uuid.UUID) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := n.Dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if v, err := conn.Do(ctx, "PING"); err != nil || v != "PONG" {
		return fmt.Errorf("PING: %v %v", v, err)
	}
	for p, key := range keys {
		if _, err := conn.Do(ctx, "EPSCAN", strconv.Itoa(p), "-", "+", "COUNT", "1"); err != nil {
			return fmt.Errorf("EPSCAN %d: %w", p, err)
		}
		// The node routes the append to the partition's coordinator, which
		// needs a quorum of live replicas before it even looks at versions.
		// A version conflict therefore proves the write path, and nothing
		// is written. (A forwarded conflict comes back as REMOTEOPFAILED:
		// see IsVersionConflict.)
		_, err := conn.Do(ctx, "EAPPEND", probeStream, "Probe", "PARTITION_KEY", key.String(),
			"EXPECTED_VERSION", "1000000000")
		if !IsVersionConflict(err) {
			if err != nil && strings.Contains(err.Error(), "all replica nodes failed") {
				return fmt.Errorf("%w: probe append to partition %d: %v", errStuck, p, err)
			}
			return fmt.Errorf("probe append to partition %d: want a version conflict, got %v", p, err)
		}
	}
	return nil
}

// probeStream is the stream the readiness probe's appends name; they are
// not meant to write it.
const probeStream = "esmill-sierracluster-probe"

// probeKeys returns a partition key for each partition.
func probeKeys(partitions int) []uuid.UUID {
	keys := make([]uuid.UUID, partitions)
	found := 0
	for i := 0; found < partitions; i++ {
		k := PartitionKey(fmt.Sprintf("%s-%d", probeStream, i))
		p := PartitionOf(k, partitions)
		if keys[p] == uuid.Nil {
			keys[p] = k
			found++
		}
	}
	return keys
}

// PeerID asks the node for its libp2p peer id (HELLO). A node draws a new
// one at every start.
func (n *Node) PeerID(ctx context.Context) (string, error) {
	conn, err := n.Dial(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	v, err := conn.Do(ctx, "HELLO", "3")
	if err != nil {
		return "", err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return "", fmt.Errorf("HELLO answered %T", v)
	}
	id, _ := m["peer_id"].(string)
	return id, nil
}

// IsVersionConflict reports whether err is a failed expected-version check:
// WRONGVER from the partition's coordinator, or, when the node that took the
// append forwarded it to the coordinator, REMOTEOPFAILED carrying WRONGVER's
// text without its code (TestKnownDifferenceForwardedWrongVersion).
func IsVersionConflict(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code == "WRONGVER" ||
		e.Code == "REMOTEOPFAILED" && strings.Contains(e.Msg, "current stream version is")
}

// tracesHeartbeats reports whether a log filter lets the heartbeat lines
// through.
func tracesHeartbeats(filter string) bool {
	return strings.Contains(filter, "sierradb_topology::behaviour=trace") ||
		strings.Contains(filter, "sierradb_topology=trace") ||
		strings.TrimSpace(filter) == "trace"
}

// errStuck marks a probe failure typical of a coordinator missing from its
// own replica map.
var errStuck = errors.New("appends fail on every replica")

// stuckTimeout is how long WaitFormed lets a stuck partition recover on its
// own before it restarts a node.
const stuckTimeout = 3 * time.Second

// repair restarts the running node that started last and waits until it
// has joined again.
func (c *Cluster) repair(ctx context.Context) error {
	var victim *Node
	var members []*Node
	for _, n := range c.nodes {
		if !n.Running() {
			continue
		}
		members = append(members, n)
		if victim == nil || n.startedAt().After(victim.startedAt()) {
			victim = n
		}
	}
	if victim == nil {
		return errors.New("no node running")
	}
	c.mu.Lock()
	c.repairs++
	c.mu.Unlock()
	if err := victim.Kill(); err != nil {
		return err
	}
	return c.startAndJoin(ctx, victim, members)
}

// Repairs counts the nodes WaitFormed restarted to get a stuck partition
// going again.
func (c *Cluster) Repairs() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.repairs
}
