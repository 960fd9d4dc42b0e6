//go:build linux

package sierracluster

import (
	"context"
	"fmt"
	"time"
)

// joinTimeout bounds how long a starting node may take to exchange
// heartbeats with the nodes already running before it is started again.
const joinTimeout = 10 * time.Second

// startNodes starts the nodes: all at once with StartTogether, otherwise
// one after the other, each once the ones before it have joined.
func (c *Cluster) startNodes(ctx context.Context) error {
	for i, n := range c.nodes {
		if c.cfg.StartTogether {
			if err := n.start(); err != nil {
				return err
			}
			continue
		}
		if err := c.startAndJoin(ctx, n, c.nodes[:i+1]); err != nil {
			return err
		}
	}
	return nil
}

// startAndJoin starts n and waits until it and the running members have
// heard each other's heartbeats. SierraDB 0.3.1 sometimes does not connect
// to a peer it has discovered (seen once in a dozen serial starts of 5
// nodes: both nodes log the mDNS discovery and nothing after it), so a node
// that has not joined within joinTimeout is killed and started again, up to
// three times; Rejoins counts these.
func (c *Cluster) startAndJoin(ctx context.Context, n *Node, members []*Node) error {
	var last error
	for attempt := range 3 {
		if attempt > 0 {
			c.mu.Lock()
			c.rejoins++
			c.mu.Unlock()
			if err := n.Kill(); err != nil {
				return err
			}
		}
		c.markAll()
		if err := n.start(); err != nil {
			return err
		}
		jctx, cancel := context.WithTimeout(ctx, joinTimeout)
		last = c.waitJoined(jctx, members)
		cancel()
		if last == nil {
			return nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("node %d did not join: %w", n.Index, last)
}

// waitJoined polls joined until it succeeds or ctx ends.
func (c *Cluster) waitJoined(ctx context.Context, members []*Node) error {
	for {
		err := c.joined(ctx, members)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Rejoins counts the nodes the harness had to start again because they
// did not join (see startAndJoin).
func (c *Cluster) Rejoins() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rejoins
}
