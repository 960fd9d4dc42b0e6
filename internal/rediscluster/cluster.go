//go:build linux

package rediscluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/esmill/esmill/internal/proc"
	"github.com/esmill/esmill/internal/testservice"
)

// Config says what cluster to start. The zero value is 3 masters with one
// replica each.
type Config struct {
	// Masters is the number of masters. Default: 3 (Redis Cluster's
	// minimum).
	Masters int
	// ReplicasPerMaster is the number of replicas of each master.
	// Default: 1. Set NoReplicas for none.
	ReplicasPerMaster int
	// NoReplicas starts masters only.
	NoReplicas bool
	// NodeTimeout is cluster-node-timeout: how long a master may be
	// unreachable before its replica is promoted. Default: 2 s (Redis's
	// own default is 15 s).
	NodeTimeout time.Duration
	// StartTimeout bounds Start. Default: 60 s.
	StartTimeout time.Duration
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Masters != 0 && c.Masters < 3 {
		errs = append(errs, fmt.Errorf("Masters %d: Redis Cluster needs at least 3", c.Masters))
	}
	if c.ReplicasPerMaster < 0 || c.ReplicasPerMaster > 5 {
		errs = append(errs, fmt.Errorf("ReplicasPerMaster %d: want 0 to 5", c.ReplicasPerMaster))
	}
	if c.NodeTimeout < 0 || c.StartTimeout < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	return errors.Join(errs...)
}

func (c *Config) setDefaults() {
	if c.Masters == 0 {
		c.Masters = 3
	}
	if c.ReplicasPerMaster == 0 && !c.NoReplicas {
		c.ReplicasPerMaster = 1
	}
	if c.NoReplicas {
		c.ReplicasPerMaster = 0
	}
	if c.NodeTimeout == 0 {
		c.NodeTimeout = 2 * time.Second
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 60 * time.Second
	}
}

// Cluster is a running Redis Cluster of redis-server processes on
// loopback ports.
type Cluster struct {
	cfg   Config
	dir   string
	bin   string
	nodes []*Node

	mu     sync.Mutex
	closed bool
}

// Node is one redis-server of the cluster.
type Node struct {
	// Addr is the node's client address, 127.0.0.1:port.
	Addr string
	port int
	bus  int
	dir  string
	c    *Cluster

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Nodes are the cluster's nodes, in start order.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Addrs are every node's address, for redis.ClusterOptions.Addrs.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Addr
	}
	return out
}

// Start starts a Redis Cluster for t and waits until it is ready: every
// slot served, cluster_state ok on every node, every replica attached. It
// is closed when t ends. Without redis-server and redis-cli, t is skipped,
// or failed under CI=true.
func Start(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	for _, b := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(b); err != nil {
			if testservice.InCI() {
				t.Fatalf("Redis Cluster unavailable under CI=true: no %s on PATH (install Debian's redis-server)", b)
			}
			t.Skipf("Redis Cluster unavailable (set CI=true to make this a failure): no %s on PATH", b)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("start Redis Cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.nodes {
				t.Logf("node %s log tail:\n%s", n.Addr, tail(filepath.Join(n.dir, "redis.log"), 2000))
			}
		}
		c.Close()
	})
	return c
}

// New starts a cluster, giving up when ctx ends or after
// Config.StartTimeout. Close it
// when done.
func New(ctx context.Context, cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "esmill-rediscluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, dir: dir, bin: bin}
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	if err := c.start(ctx); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	total := c.cfg.Masters * (1 + c.cfg.ReplicasPerMaster)
	for i := range total {
		n, err := c.startNode(ctx, i)
		if err != nil {
			return err
		}
		c.nodes = append(c.nodes, n)
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(c.cfg.ReplicasPerMaster), "--cluster-yes")
	out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}
	return c.WaitReady(ctx)
}

// startAttempts bounds the tries to start one node of a new cluster.
const startAttempts = 3

// startNode starts node i of a new cluster on free ports. A node that exits
// before it answers is started again, on new ports and in a new directory,
// up to startAttempts times: a port chosen free can be taken before
// redis-server binds it (another process of a busy machine), as
// sierradbtest also allows for. The error names every attempt's exit.
func (c *Cluster) startNode(ctx context.Context, i int) (*Node, error) {
	var errs []error
	for attempt := range startAttempts {
		port, bus, err := freePortPair()
		if err != nil {
			return nil, err
		}
		n := &Node{Addr: fmt.Sprintf("127.0.0.1:%d", port), port: port, bus: bus, c: c,
			dir: filepath.Join(c.dir, fmt.Sprintf("node%d-%d", i, attempt))}
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			return nil, err
		}
		err = n.Start(ctx)
		if err == nil {
			return n, nil
		}
		errs = append(errs, err)
		if !errors.Is(err, errExited) || ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// errExited: a node's process ended before it answered.
var errExited = errors.New("exited before answering")

// freePortPair returns a free client port and a free cluster-bus port.
func freePortPair() (int, int, error) {
	a, err := testservice.FreePort()
	if err != nil {
		return 0, 0, err
	}
	b, err := testservice.FreePort()
	return a, b, err
}

// Start starts the node's process (again, after Kill or Stop, on the same
// port and directory: it keeps its nodes.conf and append-only file) and
// waits until it answers PING.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		select {
		case <-n.exited:
		default:
			return fmt.Errorf("node %s is running", n.Addr)
		}
	}
	args := []string{
		"--bind", "127.0.0.1", "--port", strconv.Itoa(n.port), "--cluster-port", strconv.Itoa(n.bus),
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.FormatInt(n.c.cfg.NodeTimeout.Milliseconds(), 10),
		"--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--dir", n.dir, "--logfile", "redis.log", "--protected-mode", "yes",
	}
	cmd := exec.Command(n.c.bin, args...)
	cmd.Dir = n.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	n.cmd, n.exited = cmd, exited
	go func() { cmd.Wait(); close(exited) }()
	for {
		if err := ping(ctx, n.Addr); err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server %s %w (%s); log:\n%s", n.Addr, errExited, cmd.ProcessState, tail(filepath.Join(n.dir, "redis.log"), 2000))
		case <-ctx.Done():
			return fmt.Errorf("redis-server %s not answering: %w", n.Addr, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Kill sends SIGKILL and waits for the process to end.
func (n *Node) Kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
}

// Running reports whether the node's process is alive.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil && proc.Alive(n.exited)
}

// Close kills every node and removes the directories. It is idempotent.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	for _, n := range c.nodes {
		n.Kill()
	}
	return os.RemoveAll(c.dir)
}

// Do sends one command to addr with redis-cli-free plain RESP and returns
// the reply as text (enough for CLUSTER INFO, CLUSTER NODES, ROLE).
func Do(ctx context.Context, addr string, args ...string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "+"):
		return line[1:], nil
	case strings.HasPrefix(line, "-"):
		return "", errors.New(line[1:])
	case strings.HasPrefix(line, "$"):
		size, err := strconv.Atoi(line[1:])
		if err != nil || size < 0 {
			return "", fmt.Errorf("reply %q", line)
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:size]), nil
	}
	return line, nil
}

func ping(ctx context.Context, addr string) error {
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	v, err := Do(pctx, addr, "PING")
	if err != nil {
		return err
	}
	if v != "PONG" {
		return fmt.Errorf("PING answered %q", v)
	}
	return nil
}

func tail(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}
