//go:build linux

package sierracluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esmill/esmill/internal/testservice"
)

// NamePrefix starts the name of every network namespace and temporary
// directory the harness makes; the sweep of stale ones matches on it. The
// owning process id follows it: esmc<pid>-<random>.
const NamePrefix = "esmc"

// Config says what cluster to start. The zero value is a 3-node cluster
// with the server's defaults.
type Config struct {
	// Nodes is the number of nodes. Default: 3.
	Nodes int
	// ReplicationFactor is replication.factor. Default: 0, the server's
	// own default, min(Nodes, 3).
	ReplicationFactor int
	// Partitions is partition.count. Default: 0, the server's 32.
	Partitions int
	// Buckets is bucket.count. Default: 0, the server's 4. Replicas are
	// assigned per bucket (see Owners), so with the default 4 buckets a
	// fifth node is never a partition's first replica (tested:
	// TestStartFiveNodesRF3).
	Buckets int
	// HeartbeatInterval and HeartbeatTimeout are heartbeat.interval_ms and
	// heartbeat.timeout_ms. Default: 0, the server's 1 s and 6 s.
	HeartbeatInterval, HeartbeatTimeout time.Duration
	// FormTimeout bounds the wait for the cluster to form at start.
	// Default: 60 s.
	FormTimeout time.Duration
	// StartTogether starts every node at once. By default each node starts
	// once the ones before it have joined, which keeps the concurrent
	// ownership exchange of SierraDB 0.3.1 from leaving a node out of its
	// own replica map (TestKnownDifferenceStaleOwnershipResponse).
	StartTogether bool
	// Binary is the sierradb binary. Default: testservice.SierraDBBinary.
	Binary string
	// Log is the server's log filter. Default: info, plus trace for the
	// topology behaviour, whose heartbeat lines the readiness probe reads
	// (with any other filter, WaitFormed relies on its probes alone).
	Log string
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Nodes < 0 || c.Nodes > 200 {
		errs = append(errs, fmt.Errorf("Nodes %d: want 1 to 200", c.Nodes))
	}
	if c.ReplicationFactor < 0 || c.ReplicationFactor > 12 {
		errs = append(errs, fmt.Errorf("ReplicationFactor %d: want 0 (server default) to 12", c.ReplicationFactor))
	}
	if c.Partitions < 0 || c.Partitions > 65535 {
		errs = append(errs, fmt.Errorf("Partitions %d: want 0 (server default) to 65535", c.Partitions))
	}
	if c.Buckets < 0 || c.Buckets > 65535 {
		errs = append(errs, fmt.Errorf("Buckets %d: want 0 (server default) to 65535", c.Buckets))
	}
	nodes := c.Nodes
	if nodes == 0 {
		nodes = 3
	}
	if nodes > c.EffectiveBuckets()+c.EffectiveReplicationFactor()-1 {
		errs = append(errs, fmt.Errorf("%d nodes with %d buckets and replication factor %d: nodes from index %d on hold no bucket, "+
			"and SierraDB 0.3.1 panics on such a node (TestKnownDifferenceNodeWithoutBuckets); raise Buckets",
			nodes, c.EffectiveBuckets(), c.EffectiveReplicationFactor(), c.EffectiveBuckets()+c.EffectiveReplicationFactor()-1))
	}
	if c.HeartbeatInterval < 0 || c.HeartbeatTimeout < 0 || c.FormTimeout < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	return errors.Join(errs...)
}

func (c *Config) setDefaults() error {
	if c.Nodes == 0 {
		c.Nodes = 3
	}
	if c.FormTimeout == 0 {
		c.FormTimeout = 60 * time.Second
	}
	if c.Log == "" {
		c.Log = logFilter
	}
	if c.Binary == "" {
		bin, err := testservice.SierraDBBinary()
		if err != nil {
			return err
		}
		c.Binary = bin
	}
	return nil
}

// EffectiveReplicationFactor is the replication factor the nodes run with.
func (c Config) EffectiveReplicationFactor() int {
	rf := c.ReplicationFactor
	if rf == 0 {
		rf = 3
	}
	nodes := c.Nodes
	if nodes == 0 {
		nodes = 3
	}
	return min(rf, nodes)
}

// EffectivePartitions is the partition count the nodes run with.
func (c Config) EffectivePartitions() int {
	if c.Partitions == 0 {
		return 32
	}
	return c.Partitions
}

// EffectiveBuckets is the bucket count the nodes run with.
func (c Config) EffectiveBuckets() int {
	if c.Buckets == 0 {
		return 4
	}
	return c.Buckets
}

// toml is the nodes' shared configuration file. Only what Config sets is
// written; everything else keeps the server's defaults.
func (c Config) toml() string {
	var b strings.Builder
	b.WriteString("[network]\nmdns = true\ncluster_enabled = true\n")
	if c.ReplicationFactor != 0 {
		fmt.Fprintf(&b, "[replication]\nfactor = %d\n", c.ReplicationFactor)
	}
	if c.Partitions != 0 {
		fmt.Fprintf(&b, "[partition]\ncount = %d\n", c.Partitions)
	}
	if c.Buckets != 0 {
		fmt.Fprintf(&b, "[bucket]\ncount = %d\n", c.Buckets)
	}
	if c.HeartbeatInterval != 0 || c.HeartbeatTimeout != 0 {
		b.WriteString("[heartbeat]\n")
		if c.HeartbeatInterval != 0 {
			fmt.Fprintf(&b, "interval_ms = %d\n", c.HeartbeatInterval.Milliseconds())
		}
		if c.HeartbeatTimeout != 0 {
			fmt.Fprintf(&b, "timeout_ms = %d\n", c.HeartbeatTimeout.Milliseconds())
		}
	}
	return b.String()
}

// Cluster is a running SierraDB cluster: N real sierradb processes, each in
// its own network namespace, joined by a bridge in a hub namespace. The
// subnet (10.213.0.0/24) exists only in those namespaces; the root namespace
// gets no interface, so mDNS and cluster traffic cannot reach its real
// interfaces. Clients reach the nodes through Node.Addr, a loopback port
// forwarded into the node's namespace.
type Cluster struct {
	cfg   Config
	name  string // esmc<pid>-<random>
	hub   string // hub namespace (holds the bridge)
	dir   string
	conf  string
	nodes []*Node
	// FormedIn is how long the cluster took from starting the processes
	// until WaitFormed first succeeded.
	FormedIn time.Duration

	mu      sync.Mutex
	marks   map[int]int64 // log offsets before which membership lines no longer count
	rejoins int
	repairs int
	closed  bool
}

// Config is the configuration the cluster runs with, defaults filled in.
func (c *Cluster) Config() Config { return c.cfg }

// Nodes are the cluster's nodes by index.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Node returns node i.
func (c *Cluster) Node(i int) *Node { return c.nodes[i] }

// Addrs are the nodes' client addresses (Node.Addr), by index.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// EnvClusterTests switches the SierraDB cluster tests on: they need root,
// create network namespaces and take minutes, so `go test ./...` skips them
// unless it is set to 1; .ci/run runs them in a step of their own.
const EnvClusterTests = "ESMILL_CLUSTER_TESTS"

// Enabled reports whether EnvClusterTests is set to 1.
func Enabled() bool { return os.Getenv(EnvClusterTests) == "1" }

// Require skips t unless the cluster tests are switched on (EnvClusterTests),
// and skips it, or fails it under CI=true, without root, the ip tool or the
// sierradb binary.
func Require(t testing.TB) {
	t.Helper()
	if !Enabled() {
		t.Skipf("SierraDB cluster tests are off: set %s=1 (they need root and take minutes; .ci/run runs them)", EnvClusterTests)
	}
	if err := checkPrivileges(); err != nil {
		unavailable(t, "%v", err)
	}
	if _, err := testservice.SierraDBBinary(); err != nil {
		unavailable(t, "%v", err)
	}
}

// Start starts a cluster for t and waits until it has formed. It is closed
// when t ends; if t failed, the tail of every node's log is logged first.
// It calls Require first.
func Start(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.FormTimeout+time.Minute)
	defer cancel()
	c, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("start SierraDB cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.nodes {
				t.Logf("node %d log tail (%s):\n%s", n.Index, n.log, tail(n.log, 3000))
			}
		}
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	return c
}

// New starts a cluster and waits until it has formed, giving up when ctx
// ends or after Config.FormTimeout. Close it when done, even after an error-free start
// has failed later.
func New(ctx context.Context, cfg Config) (*Cluster, error) {
	c, err := newCluster(ctx, cfg)
	if err != nil {
		return nil, err
	}
	begin := time.Now()
	fctx, cancel := context.WithTimeout(ctx, c.cfg.FormTimeout)
	defer cancel()
	if err := c.startNodes(fctx); err != nil {
		return nil, errors.Join(err, c.logTails(), c.Close())
	}
	if err := c.WaitFormed(fctx); err != nil {
		return nil, errors.Join(err, c.logTails(), c.Close())
	}
	c.FormedIn = time.Since(begin)
	return c, nil
}

// newCluster validates cfg and sets up namespaces, links, directories and
// forwarders, without starting any node.
func newCluster(ctx context.Context, cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := checkPrivileges(); err != nil {
		return nil, err
	}
	Sweep(ctx)
	var rnd [3]byte
	rand.Read(rnd[:])
	name := fmt.Sprintf("%s%d-%s", NamePrefix, os.Getpid(), hex.EncodeToString(rnd[:]))
	dir, err := os.MkdirTemp("", name+"-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, name: name, hub: name + "h", dir: dir, conf: filepath.Join(dir, "sierra.toml"), marks: map[int]int64{}}
	if err := c.setup(ctx); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

// setup makes the namespaces, the bridge, the links, the directories and
// the forwarders.
func (c *Cluster) setup(ctx context.Context) error {
	if err := os.WriteFile(c.conf, []byte(c.cfg.toml()), 0o644); err != nil {
		return err
	}
	steps := [][]string{
		{"netns", "add", c.hub},
		{"-n", c.hub, "link", "set", "lo", "up"},
		{"-n", c.hub, "link", "add", "br0", "type", "bridge"},
		{"-n", c.hub, "link", "set", "br0", "up"},
	}
	for _, s := range steps {
		if _, err := ip(ctx, s...); err != nil {
			return err
		}
	}
	for i := range c.cfg.Nodes {
		n := &Node{
			Index: i,
			IP:    fmt.Sprintf("10.213.0.%d", 10+i),
			c:     c,
			netns: fmt.Sprintf("%sn%d", c.name, i),
			link:  fmt.Sprintf("n%d", i),
			dir:   filepath.Join(c.dir, fmt.Sprintf("node%d", i), "data"),
			log:   filepath.Join(c.dir, fmt.Sprintf("node%d", i), "sierradb.log"),
		}
		c.nodes = append(c.nodes, n)
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			return err
		}
		// The veth pair is created with one end in the hub and the other in
		// the node's namespace: no end ever exists in the root namespace.
		steps := [][]string{
			{"netns", "add", n.netns},
			{"-n", n.netns, "link", "set", "lo", "up"},
			{"-n", c.hub, "link", "add", n.link, "type", "veth", "peer", "name", "eth0", "netns", n.netns},
			{"-n", c.hub, "link", "set", n.link, "master", "br0"},
			{"-n", c.hub, "link", "set", n.link, "up"},
			{"-n", n.netns, "addr", "add", n.IP + "/24", "dev", "eth0"},
			{"-n", n.netns, "link", "set", "eth0", "up"},
			{"-n", n.netns, "route", "add", "224.0.0.0/4", "dev", "eth0"},
		}
		for _, s := range steps {
			if _, err := ip(ctx, s...); err != nil {
				return err
			}
		}
		fwd, err := newForwarder(n.netns, fmt.Sprintf("127.0.0.1:%d", clientPort))
		if err != nil {
			return err
		}
		n.fwd = fwd
	}
	return nil
}

// Close kills every node, stops the forwarders, deletes the namespaces and
// the data directories. It is idempotent.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	var errs []error
	for _, n := range c.nodes {
		if err := n.Kill(); err != nil {
			errs = append(errs, err)
		}
		if n.fwd != nil {
			n.fwd.Close()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, n := range c.nodes {
		errs = append(errs, deleteNetns(ctx, n.netns))
	}
	errs = append(errs, deleteNetns(ctx, c.hub))
	errs = append(errs, os.RemoveAll(c.dir))
	return errors.Join(errs...)
}

// markAll records every node's log size: membership lines logged before
// now no longer count for WaitFormed.
func (c *Cluster) markAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if st, err := os.Stat(n.log); err == nil {
			c.marks[n.Index] = st.Size()
		}
	}
}

func (c *Cluster) mark(i int) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.marks[i]
}

func (c *Cluster) logTails() error {
	var b strings.Builder
	for _, n := range c.nodes {
		fmt.Fprintf(&b, "node %d log tail:\n%s\n", n.Index, tail(n.log, 2000))
	}
	return errors.New(b.String())
}

// tail returns the last n bytes of a file.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	off := max(st.Size()-n, 0)
	buf := make([]byte, st.Size()-off)
	f.ReadAt(buf, off)
	return string(buf)
}

// unavailable skips t, or fails it under CI=true.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if testservice.InCI() {
		t.Fatalf("SierraDB cluster unavailable under CI=true: %s", msg)
	}
	t.Skipf("SierraDB cluster unavailable (set CI=true to make this a failure): %s", msg)
}
