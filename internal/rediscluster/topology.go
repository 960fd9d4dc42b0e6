//go:build linux

package rediscluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	ID     string
	Addr   string // ip:port
	Flags  []string
	Master string // master's id, or "-"
	Link   string // connected / disconnected
	Slots  int    // number of slots served
	Ranges [][2]int
}

func (n clusterNode) has(flag string) bool {
	for _, f := range n.Flags {
		if f == flag {
			return true
		}
	}
	return false
}

// nodesOf asks addr for CLUSTER NODES.
func nodesOf(ctx context.Context, addr string) ([]clusterNode, error) {
	out, err := Do(ctx, addr, "CLUSTER", "NODES")
	if err != nil {
		return nil, err
	}
	var nodes []clusterNode
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		n := clusterNode{ID: f[0], Addr: addr, Flags: strings.Split(f[2], ","), Master: f[3], Link: f[7]}
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") {
				continue // a slot being migrated
			}
			lo, hi, isRange := strings.Cut(s, "-")
			a, _ := strconv.Atoi(lo)
			b := a
			if isRange {
				b, _ = strconv.Atoi(hi)
			}
			n.Slots += b - a + 1
			n.Ranges = append(n.Ranges, [2]int{a, b})
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// info returns the fields of CLUSTER INFO.
func info(ctx context.Context, addr string) (map[string]string, error) {
	out, err := Do(ctx, addr, "CLUSTER", "INFO")
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok {
			m[k] = v
		}
	}
	return m, nil
}

// WaitReady waits, until ctx ends, for every running node to report
// cluster_state:ok with all 16384 slots ok, and every node's view has
// Masters masters serving slots, each with ReplicasPerMaster connected
// replicas, none flagged failing.
func (c *Cluster) WaitReady(ctx context.Context) error {
	return c.poll(ctx, func(ctx context.Context) error {
		for _, n := range c.nodes {
			if !n.Running() {
				return fmt.Errorf("node %s is not running", n.Addr)
			}
			if err := c.healthy(ctx, n, c.cfg.ReplicasPerMaster); err != nil {
				return err
			}
		}
		return nil
	})
}

// healthy checks one node's view: state ok, all slots, Masters masters
// with slots, each with at least replicas connected replicas.
func (c *Cluster) healthy(ctx context.Context, n *Node, replicas int) error {
	m, err := info(ctx, n.Addr)
	if err != nil {
		return fmt.Errorf("%s: CLUSTER INFO: %w", n.Addr, err)
	}
	if m["cluster_state"] != "ok" || m["cluster_slots_ok"] != "16384" {
		return fmt.Errorf("%s: cluster_state %s, slots ok %s", n.Addr, m["cluster_state"], m["cluster_slots_ok"])
	}
	nodes, err := nodesOf(ctx, n.Addr)
	if err != nil {
		return err
	}
	masters := 0
	for _, m := range nodes {
		if !m.has("master") || m.Slots == 0 {
			continue
		}
		if m.has("fail") || m.has("fail?") {
			return fmt.Errorf("%s sees master %s failing", n.Addr, m.Addr)
		}
		masters++
		connected := 0
		for _, r := range nodes {
			if r.Master == m.ID && r.Link == "connected" && !r.has("fail") && !r.has("fail?") {
				connected++
			}
		}
		if connected < replicas {
			return fmt.Errorf("%s sees %d of %d replicas of %s", n.Addr, connected, replicas, m.Addr)
		}
	}
	if masters != c.cfg.Masters {
		return fmt.Errorf("%s sees %d masters serving slots, want %d", n.Addr, masters, c.cfg.Masters)
	}
	return nil
}

func (c *Cluster) poll(ctx context.Context, check func(context.Context) error) error {
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("Redis Cluster not ready: %w (last: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Masters returns the running nodes that serve slots as masters, as the
// first running node sees them.
func (c *Cluster) Masters(ctx context.Context) ([]*Node, error) {
	for _, n := range c.nodes {
		if !n.Running() {
			continue
		}
		nodes, err := nodesOf(ctx, n.Addr)
		if err != nil {
			return nil, err
		}
		var out []*Node
		for _, m := range nodes {
			if m.has("master") && m.Slots > 0 && !m.has("fail") {
				if node := c.byAddr(m.Addr); node != nil && node.Running() {
					out = append(out, node)
				}
			}
		}
		return out, nil
	}
	return nil, errors.New("no node running")
}

// MasterFor returns the node that serves key's slot, as the first
// running node sees it.
func (c *Cluster) MasterFor(ctx context.Context, key string) (*Node, error) {
	slot := Slot(key)
	for _, n := range c.nodes {
		if !n.Running() {
			continue
		}
		nodes, err := nodesOf(ctx, n.Addr)
		if err != nil {
			return nil, err
		}
		for _, m := range nodes {
			if !m.has("master") || m.has("fail") {
				continue
			}
			for _, r := range m.Ranges {
				if slot >= r[0] && slot <= r[1] {
					if node := c.byAddr(m.Addr); node != nil {
						return node, nil
					}
				}
			}
		}
		break
	}
	return nil, fmt.Errorf("no running master serves slot %d", slot)
}

func (c *Cluster) byAddr(addr string) *Node {
	for _, n := range c.nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// KillMaster SIGKILLs master m and waits until a replica has taken over
// its slots and the running nodes report cluster_state:ok again. It
// returns the time from the kill until then.
func (c *Cluster) KillMaster(ctx context.Context, m *Node) (time.Duration, error) {
	nodes, err := nodesOf(ctx, m.Addr)
	if err != nil {
		return 0, err
	}
	var id string
	for _, n := range nodes {
		if n.has("myself") {
			id = n.ID
			if !n.has("master") || n.Slots == 0 {
				return 0, fmt.Errorf("%s is not a master serving slots", m.Addr)
			}
		}
	}
	start := time.Now()
	m.Kill()
	err = c.poll(ctx, func(ctx context.Context) error {
		for _, n := range c.nodes {
			if !n.Running() {
				continue
			}
			m, err := info(ctx, n.Addr)
			if err != nil {
				return err
			}
			if m["cluster_state"] != "ok" || m["cluster_slots_ok"] != "16384" {
				return fmt.Errorf("%s: cluster_state %s", n.Addr, m["cluster_state"])
			}
			view, err := nodesOf(ctx, n.Addr)
			if err != nil {
				return err
			}
			for _, v := range view {
				if v.ID == id && v.Slots > 0 {
					return fmt.Errorf("%s still gives the killed master slots", n.Addr)
				}
			}
		}
		return nil
	})
	return time.Since(start), err
}

// Slot is the Redis Cluster hash slot of key: CRC16 of the key, or of its
// hash tag (the part between the first { and the next }), mod 16384.
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % 16384)
}

// crc16 is CRC-16/XMODEM, the checksum Redis Cluster uses.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
