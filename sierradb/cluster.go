package sierradb

// The cluster side of a Client: one connection pool per node, the
// partitions' holders (static) and coordinators (probed), and the probe
// loop that keeps the coordinators current.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// clusterNode is one node of the cluster and its connection pool.
type clusterNode struct {
	index int
	addr  string
	rdb   *redis.Client

	mu        sync.Mutex
	downUntil time.Time
}

func (n *clusterNode) down(now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return now.Before(n.downUntil)
}

func (n *clusterNode) markDown(until time.Time) {
	n.mu.Lock()
	if until.After(n.downUntil) {
		n.downUntil = until
	}
	n.mu.Unlock()
}

func (n *clusterNode) markUp() {
	n.mu.Lock()
	n.downUntil = time.Time{}
	n.mu.Unlock()
}

// do sends one command to the node.
func (n *clusterNode) do(ctx context.Context, args ...any) (any, error) {
	v, err := n.rdb.Do(ctx, args...).Result()
	if err != nil {
		return nil, convertErr(err)
	}
	return v, nil
}

// cluster is the topology a cluster client works with.
type cluster struct {
	c     *Client
	cfg   ClusterConfig
	nodes []*clusterNode

	// ctx ends with the client: it stops the probe loop.
	ctx       context.Context
	cancel    context.CancelFunc
	startOnce sync.Once
	wg        sync.WaitGroup

	// probeMu serialises probes; probedAt is when the last one started.
	probeMu  sync.Mutex
	probedAt time.Time
	keys     []uuid.UUID // a partition key per partition, for the probes

	mu      sync.Mutex
	coord   []int // per partition: the coordinator's index, -1 unknown
	changed chan struct{}
	probes  int
	moves   int
	// legMoves counts the subscription legs replaced, by every
	// subscription of the client.
	legMoves atomic.Int64
}

func newCluster(c *Client, cfg ClusterConfig) *cluster {
	cl := &cluster{c: c, cfg: cfg, changed: make(chan struct{})}
	cl.ctx, cl.cancel = context.WithCancel(context.Background())
	for i, addr := range cfg.Nodes {
		cl.nodes = append(cl.nodes, &clusterNode{index: i, addr: addr, rdb: newRedis(c.cfg, addr)})
	}
	return cl
}

func (cl *cluster) close() error {
	cl.cancel()
	cl.wg.Wait()
	var errs []error
	for _, n := range cl.nodes {
		errs = append(errs, n.rdb.Close())
	}
	return errors.Join(errs...)
}

// holders are the indexes of the nodes holding partition p.
func (cl *cluster) holders(p uint16) []int { return cl.cfg.Holders(p) }

// start launches the probe loop once, on first use, so that New does not
// connect.
func (cl *cluster) start() {
	cl.startOnce.Do(func() {
		cl.c.mu.Lock()
		closed := cl.c.closed
		if !closed {
			cl.wg.Add(1)
		}
		cl.c.mu.Unlock()
		if !closed {
			go cl.probeLoop()
		}
	})
}

func (cl *cluster) probeLoop() {
	defer cl.wg.Done()
	t := time.NewTicker(cl.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-cl.ctx.Done():
			return
		case <-t.C:
		}
		if err := cl.refresh(cl.ctx, time.Now()); err != nil && cl.ctx.Err() == nil {
			cl.c.cfg.Logger.Warn("sierradb: cluster probe failed", "error", err)
		}
	}
}

// coordinator returns the node coordinating partition p, or nil when no
// probe found one.
func (cl *cluster) coordinator(p uint16) *clusterNode {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if int(p) >= len(cl.coord) || cl.coord[p] < 0 {
		return nil
	}
	return cl.nodes[cl.coord[p]]
}

// coordinators returns a copy of the coordinator map and a channel closed
// at its next change.
func (cl *cluster) coordinators() ([]int, <-chan struct{}) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return append([]int(nil), cl.coord...), cl.changed
}

// ensure makes sure the coordinators were probed at least once.
func (cl *cluster) ensure(ctx context.Context) error {
	cl.start()
	cl.mu.Lock()
	probed := cl.coord != nil
	cl.mu.Unlock()
	if probed {
		return nil
	}
	return cl.refresh(ctx, time.Time{})
}

// refresh probes the coordinators again unless a probe started after
// since, which then already saw whatever made the caller ask.
func (cl *cluster) refresh(ctx context.Context, since time.Time) error {
	cl.probeMu.Lock()
	defer cl.probeMu.Unlock()
	if cl.probedAt.After(since) {
		return nil
	}
	start := time.Now()
	count, err := cl.c.PartitionCount(ctx)
	if err != nil {
		return err
	}
	if len(cl.keys) != int(count) {
		cl.keys = probeKeys(count)
	}
	cl.mu.Lock()
	prev := append([]int(nil), cl.coord...)
	cl.mu.Unlock()
	next := make([]int, count)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for p := range count {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			guess := -1
			if int(p) < len(prev) {
				guess = prev[p]
			}
			next[p] = cl.probePartition(ctx, p, guess)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	cl.probedAt = start
	cl.mu.Lock()
	cl.probes++
	if !equalInts(prev, next) {
		cl.coord = next
		if prev != nil {
			cl.moves++
		}
		close(cl.changed)
		cl.changed = make(chan struct{})
		cl.c.cfg.Logger.Info("sierradb: cluster coordinators", "coordinators", summarize(next))
	}
	cl.mu.Unlock()
	return nil
}

// probePartition asks p's holders, the last known coordinator first, to
// append with an impossible expected version: only the coordinator (seeing
// a quorum of the partition's replicas) answers WRONGVER; a holder that is
// not answers REMOTEOPFAILED with WRONGVER's text (forwarded). Nothing is
// written. It returns the coordinator's index, or -1.
func (cl *cluster) probePartition(ctx context.Context, p uint16, guess int) int {
	order := cl.holders(p)
	for i, h := range order {
		if h == guess && i > 0 {
			order = append([]int{h}, append(append([]int(nil), order[:i]...), order[i+1:]...)...)
			break
		}
	}
	key := cl.keys[p].String()
	for _, h := range order {
		n := cl.nodes[h]
		pctx, cancel := context.WithTimeout(ctx, cl.cfg.ProbeTimeout)
		_, err := n.do(pctx, "EAPPEND", probeStream, "Probe", "PARTITION_KEY", key, "EXPECTED_VERSION", probeVersion)
		cancel()
		var se *ServerError
		switch {
		case err == nil:
			// Cannot happen (no stream reaches the probe's version);
			// a written probe is not taken for a coordinator answer.
			cl.c.cfg.Logger.Warn("sierradb: a coordinator probe was stored", "partition", p, "node", n.addr)
		case errors.As(err, &se) && se.Code == CodeWrongVersion:
			n.markUp()
			return h
		case isConnErr(err):
			n.markDown(time.Now().Add(cl.cfg.NodeDownFor))
		}
		if ctx.Err() != nil {
			return -1
		}
	}
	return -1
}

// probeStream is the stream the coordinator probes name; they are not
// meant to write it. probeVersion is an expected version no stream reaches.
const (
	probeStream  = "esmill-cluster-probe"
	probeVersion = "1000000000000"
)

// probeKeys returns a partition key for each partition.
func probeKeys(count uint16) []uuid.UUID {
	keys := make([]uuid.UUID, count)
	found := 0
	for i := 0; found < int(count); i++ {
		k := StreamPartitionKey(probeStream + "-" + strconv.Itoa(i))
		p := PartitionID(k, count)
		if keys[p] == uuid.Nil {
			keys[p] = k
			found++
		}
	}
	return keys
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// summarize describes a coordinator map as "node: count" pairs.
func summarize(coord []int) string {
	counts := map[int]int{}
	for _, c := range coord {
		counts[c]++
	}
	var b strings.Builder
	for n := -1; n < len(coord); n++ {
		if k := counts[n]; k > 0 {
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			if n < 0 {
				fmt.Fprintf(&b, "none: %d", k)
			} else {
				fmt.Fprintf(&b, "%d: %d", n, k)
			}
		}
	}
	return b.String()
}

// isConnErr reports a failure of the connection rather than an answer of
// the server.
func isConnErr(err error) bool {
	var se *ServerError
	if errors.As(err, &se) {
		return false
	}
	return IsRetryable(err)
}

// clientErrorCodes are the codes that describe the request, not the
// cluster: sending it elsewhere gives the same answer.
var clientErrorCodes = map[string]bool{
	CodeInvalidArg: true, CodeWrongVersion: true, CodeNotFound: true, "SYNTAX": true,
}

// failoverWorthy reports whether another node (or the same one after the
// cluster changed) may succeed where err failed.
func failoverWorthy(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, ErrClosed) || errors.Is(err, ErrWrongExpectedVersion) {
		return false
	}
	var se *ServerError
	if errors.As(err, &se) {
		return se.Code != "" && !clientErrorCodes[se.Code]
	}
	return IsRetryable(err)
}

// order returns the nodes to try for partition p: the coordinator, then
// (for reads) the nodes that hold no replica, which forward to the
// coordinator, then the holders, then the rest; nodes marked down go last.
func (cl *cluster) order(p uint16, read bool) []*clusterNode {
	var first []int
	if c := cl.coordinator(p); c != nil {
		first = append(first, c.index)
	}
	holders := cl.holders(p)
	holds := make(map[int]bool, len(holders))
	for _, h := range holders {
		holds[h] = true
	}
	var others []int
	for i := range cl.nodes {
		if !holds[i] {
			others = append(others, i)
		}
	}
	if read {
		first = append(first, others...)
		first = append(first, holders...)
	} else {
		first = append(first, holders...)
		first = append(first, others...)
	}
	return cl.arrange(first)
}

// arrange removes duplicates and moves nodes marked down to the end.
func (cl *cluster) arrange(idx []int) []*clusterNode {
	now := time.Now()
	seen := make(map[int]bool, len(idx))
	var up, down []*clusterNode
	for _, i := range idx {
		if seen[i] {
			continue
		}
		seen[i] = true
		if n := cl.nodes[i]; n.down(now) {
			down = append(down, n)
		} else {
			up = append(up, n)
		}
	}
	return append(up, down...)
}

// anyOrder is the order for commands that any node answers.
func (cl *cluster) anyOrder() []*clusterNode {
	idx := make([]int, len(cl.nodes))
	for i := range idx {
		idx[i] = i
	}
	return cl.arrange(idx)
}

// noteFailure marks the node down after a connection failure and probes
// the coordinators again.
func (cl *cluster) noteFailure(ctx context.Context, n *clusterNode, err error, at time.Time) {
	if isConnErr(err) {
		n.markDown(time.Now().Add(cl.cfg.NodeDownFor))
	}
	if rerr := cl.refresh(ctx, at); rerr != nil && ctx.Err() == nil {
		cl.c.cfg.Logger.Warn("sierradb: cluster probe after a failure failed", "error", rerr)
	}
}

// ClusterStats counts the probes of a cluster client.
type ClusterStats struct {
	// Probes is how many probe rounds ran; Moves how many of them found a
	// partition's coordinator changed.
	Probes, Moves int
	// LegMoves is how often a subscription of this client moved
	// partitions to another node or resubscribed after a lost connection.
	LegMoves int
	// Coordinators maps each partition to the index of the node that
	// coordinates it (-1: none found), as last probed.
	Coordinators []int
}

// ClusterStats reports the cluster client's probe counts and the last
// probed coordinators; zero for a single-node client.
func (c *Client) ClusterStats() ClusterStats {
	if c.cl == nil {
		return ClusterStats{}
	}
	c.cl.mu.Lock()
	defer c.cl.mu.Unlock()
	return ClusterStats{Probes: c.cl.probes, Moves: c.cl.moves, LegMoves: int(c.cl.legMoves.Load()),
		Coordinators: append([]int(nil), c.cl.coord...)}
}
