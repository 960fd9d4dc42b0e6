//go:build linux

package sierracluster

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
)

// BlockPeer drops all traffic between n and other (both directions,
// mDNS included) with an nftables table in n's namespace, leaving both
// connected to every other node: a partial partition. Established
// connections between the two stall rather than close.
func (n *Node) BlockPeer(ctx context.Context, other *Node) error {
	n.mu.Lock()
	if !slices.Contains(n.blocked, other.IP) {
		n.blocked = append(n.blocked, other.IP)
	}
	ips := slices.Clone(n.blocked)
	n.mu.Unlock()
	return n.applyBlocks(ctx, ips)
}

// UnblockPeer lets traffic between n and other flow again.
func (n *Node) UnblockPeer(ctx context.Context, other *Node) error {
	n.mu.Lock()
	n.blocked = slices.DeleteFunc(n.blocked, func(ip string) bool { return ip == other.IP })
	ips := slices.Clone(n.blocked)
	n.mu.Unlock()
	return n.applyBlocks(ctx, ips)
}

// applyBlocks replaces the node's filter table with rules dropping ips.
func (n *Node) applyBlocks(ctx context.Context, ips []string) error {
	var b strings.Builder
	b.WriteString("table inet esmc {}\ndelete table inet esmc\ntable inet esmc {\n")
	b.WriteString("  chain in { type filter hook input priority 0; policy accept;\n")
	for _, ip := range ips {
		fmt.Fprintf(&b, "    ip saddr %s drop\n", ip)
	}
	b.WriteString("  }\n  chain out { type filter hook output priority 0; policy accept;\n")
	for _, ip := range ips {
		fmt.Fprintf(&b, "    ip daddr %s drop\n", ip)
	}
	b.WriteString("  }\n}\n")
	ctx, cancel := context.WithTimeout(ctx, ipTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.netns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s (install Debian's nftables): %w: %s", n.netns, err, strings.TrimSpace(string(out)))
	}
	return nil
}
