//go:build linux

package sierracluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/esmill/esmill/internal/proc"
	"github.com/esmill/esmill/internal/testservice"
)

// Ports every node uses inside its own namespace (each node has its own
// namespace and address, so the same ports serve every node).
const (
	clientPort  = 9090
	clusterPort = 7000
)

// Node is one sierradb process in its own network namespace.
type Node struct {
	// Index is the node's -i value, 0 … Nodes-1.
	Index int
	// IP is the node's address on the cluster's private bridge; it exists
	// only inside the cluster's namespaces.
	IP string

	c     *Cluster
	netns string
	link  string // the node's veth end in the hub namespace
	dir   string // data directory, kept across restarts
	log   string // log file, appended to across restarts
	fwd   *testservice.Proxy

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	waitErr  error
	starts   int
	cut      bool
	blocked  []string // IPs whose traffic BlockPeer drops
	startLog int64    // size of the log when the current process started
	started  time.Time
}

// Addr is a loopback address of the test's own namespace that forwards to
// the node's client port. It stays the same across restarts; while the node
// is down, connections to it are closed at once.
func (n *Node) Addr() string { return n.fwd.Addr() }

// Netns names the node's network namespace (for ip netns exec).
func (n *Node) Netns() string { return n.netns }

// DataDir is the node's data directory.
func (n *Node) DataDir() string { return n.dir }

// LogPath is the node's log file (all its runs, appended).
func (n *Node) LogPath() string { return n.log }

// Running reports whether the node's process is alive.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil && proc.Alive(n.exited)
}

// Pid is the process id of the running node, or 0.
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Dial opens a RESP3 connection to the node through its forwarder.
func (n *Node) Dial(ctx context.Context) (*Conn, error) { return Dial(ctx, n.Addr()) }

// start launches the process (in the node's namespace, on its kept data
// directory). It does not wait for readiness.
func (n *Node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		select {
		case <-n.exited:
		default:
			return fmt.Errorf("node %d is already running (pid %d)", n.Index, n.cmd.Process.Pid)
		}
	}
	cfg := n.c.cfg
	args := []string{"netns", "exec", n.netns, cfg.Binary,
		"-c", n.c.conf,
		"--dir", n.dir,
		"--client-address", "0.0.0.0:" + strconv.Itoa(clientPort),
		"--cluster-address", fmt.Sprintf("/ip4/%s/tcp/%d", n.IP, clusterPort),
		"-n", strconv.Itoa(cfg.Nodes), "-i", strconv.Itoa(n.Index),
		"--mdns", "true",
		"-l", cfg.Log,
	}
	lf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	st, _ := lf.Stat()
	n.starts++
	fmt.Fprintf(lf, "=== esmill sierracluster: start %d of node %d at %s\n", n.starts, n.Index, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command("ip", args...)
	cmd.Dir = filepath.Dir(n.dir)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	// Own process group, so a kill reaches everything; SIGKILL when the
	// test process dies, so a crashed test leaves no node behind (ip execs
	// sierradb, so the setting applies to the server itself).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("start node %d: %w", n.Index, err)
	}
	if st != nil {
		n.startLog = st.Size()
	}
	exited := make(chan struct{})
	n.cmd, n.exited, n.started = cmd, exited, time.Now()
	go func() {
		err := cmd.Wait()
		lf.Close()
		n.mu.Lock()
		n.waitErr = err
		n.mu.Unlock()
		close(exited)
	}()
	return nil
}

// signal sends sig to the node's process group and waits up to timeout
// for it to end. It returns false if the node was still running then.
func (n *Node) signal(sig syscall.Signal, timeout time.Duration) bool {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return true
	}
	syscall.Kill(-cmd.Process.Pid, sig)
	select {
	case <-exited:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Kill sends SIGKILL and waits for the process to end.
func (n *Node) Kill() error {
	if !n.signal(syscall.SIGKILL, 10*time.Second) {
		return fmt.Errorf("node %d did not die within 10s of SIGKILL", n.Index)
	}
	return nil
}

// Stop asks the node to shut down (SIGTERM: it flushes and says goodbye)
// and kills it if it is still running after timeout.
func (n *Node) Stop(timeout time.Duration) error {
	if n.signal(syscall.SIGTERM, timeout) {
		return nil
	}
	return n.Kill()
}

// Restart starts the node again on the same data directory (it must be
// stopped) and waits until the whole cluster has formed again, or until
// ctx ends. A node that does not join within 10 s is started again (see
// Cluster.Rejoins).
func (n *Node) Restart(ctx context.Context) error {
	if n.Running() {
		return fmt.Errorf("node %d is running: Stop or Kill it first", n.Index)
	}
	var members []*Node
	for _, m := range n.c.nodes {
		if m == n || m.Running() {
			members = append(members, m)
		}
	}
	if err := n.c.startAndJoin(ctx, n, members); err != nil {
		return err
	}
	return n.c.WaitFormed(ctx)
}

// Start starts a stopped node without waiting for the cluster to form;
// Restart is Start plus WaitFormed.
func (n *Node) Start() error {
	n.c.markAll()
	return n.start()
}

// CutOff takes the node's link to the cluster down: the node keeps running
// and its clients (through Addr) still reach it, but it can neither reach
// nor be reached by the other nodes.
func (n *Node) CutOff(ctx context.Context) error {
	if _, err := ip(ctx, "-n", n.c.hub, "link", "set", n.link, "down"); err != nil {
		return err
	}
	n.mu.Lock()
	n.cut = true
	n.mu.Unlock()
	return nil
}

// Heal brings the node's link back up. It does not wait; call
// WaitFormed for that.
func (n *Node) Heal(ctx context.Context) error {
	if _, err := ip(ctx, "-n", n.c.hub, "link", "set", n.link, "up"); err != nil {
		return err
	}
	n.mu.Lock()
	n.cut = false
	n.mu.Unlock()
	return nil
}

// BlockClients closes every client connection forwarded to the node and
// refuses new ones until UnblockClients: the node keeps running and stays
// in the cluster, but clients lose it, as when a client's own network to
// one node fails.
func (n *Node) BlockClients() { n.fwd.SetBlocked(true) }

// UnblockClients lets clients reach the node again.
func (n *Node) UnblockClients() { n.fwd.SetBlocked(false) }

// DropClients closes every open client connection to the node; new ones
// are accepted.
func (n *Node) DropClients() int { return n.fwd.DropAll() }

// exitErr describes how the process ended, for failure messages.
func (n *Node) exitErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.waitErr != nil {
		return n.waitErr
	}
	return errors.New("exited")
}

func (n *Node) startedAt() time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.started
}
