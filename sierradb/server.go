package sierradb

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// Ping checks that the server answers.
func (c *Client) Ping(ctx context.Context) error {
	v, err := c.do(ctx, "PING")
	if err != nil {
		return fmt.Errorf("sierradb: ping: %w", err)
	}
	if s, _ := v.(string); s != "PONG" {
		return replyTypeError("PING", v)
	}
	return nil
}

// Hello returns the server's name, version, peer id and number of
// partitions (ServerInfo.NumPartitions). A server that answers HELLO but
// is not SierraDB (Redis, say, on the address by mistake) gives a
// [*NotSierraDBError].
func (c *Client) Hello(ctx context.Context) (ServerInfo, error) {
	v, err := c.do(ctx, "HELLO", "3")
	if err != nil {
		return ServerInfo{}, fmt.Errorf("sierradb: HELLO to %s: %w", c.where(), err)
	}
	m, ok := v.(map[any]any)
	if !ok {
		return ServerInfo{}, &NotSierraDBError{Addr: c.where(), Reply: fmt.Sprintf("a %T reply", v)}
	}
	if _, ok := m["num_partitions"]; !ok || m["peer_id"] == nil {
		server, _ := m["server"].(string)
		version, _ := m["version"].(string)
		return ServerInfo{}, &NotSierraDBError{Addr: c.where(),
			Reply: fmt.Sprintf("server %q, version %q, without peer_id and num_partitions", server, version)}
	}
	d := decoder{m: m}
	info := ServerInfo{
		Server:        d.str("server"),
		Version:       d.str("version"),
		PeerID:        d.str("peer_id"),
		NumPartitions: uint16(d.uint("num_partitions")),
	}
	if d.err != nil {
		return ServerInfo{}, fmt.Errorf("sierradb: HELLO from %s: %w", c.where(), d.err)
	}
	return info, nil
}

// PartitionCount returns the server's partition count, asked once with
// HELLO and then remembered. A cluster client takes it from
// [ClusterConfig.Partitions] when set, otherwise asks any node.
func (c *Client) PartitionCount(ctx context.Context) (uint16, error) {
	c.partitionsOnce.Lock()
	defer c.partitionsOnce.Unlock()
	if c.partitions != 0 {
		return c.partitions, nil
	}
	info, err := c.Hello(ctx)
	if err != nil {
		return 0, err
	}
	if info.NumPartitions == 0 {
		return 0, fmt.Errorf("sierradb: the server at %s reports 0 partitions in its HELLO reply; check its configuration", c.where())
	}
	c.partitions = info.NumPartitions
	return c.partitions, nil
}

// PartitionOf returns the partition a partition key maps to on this server.
func (c *Client) PartitionOf(ctx context.Context, partitionKey uuid.UUID) (uint16, error) {
	n, err := c.PartitionCount(ctx)
	if err != nil {
		return 0, err
	}
	return PartitionID(partitionKey, n), nil
}

// where names the server (or the cluster) in error messages.
func (c *Client) where() string {
	if c.cl != nil {
		return "the cluster " + strings.Join(c.cfg.Cluster.Nodes, ",")
	}
	return c.cfg.Addr
}
