package sierradb

import (
	"context"
	"errors"
	"fmt"

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

// Hello returns the server's name, version, peer id and partition count.
func (c *Client) Hello(ctx context.Context) (ServerInfo, error) {
	v, err := c.do(ctx, "HELLO", "3")
	if err != nil {
		return ServerInfo{}, fmt.Errorf("sierradb: hello: %w", err)
	}
	m, err := asMap(v)
	if err != nil {
		return ServerInfo{}, err
	}
	d := decoder{m: m}
	info := ServerInfo{
		Server:        d.str("server"),
		Version:       d.str("version"),
		PeerID:        d.str("peer_id"),
		NumPartitions: uint16(d.uint("num_partitions")),
	}
	return info, d.err
}

// PartitionCount returns the server's partition count, asked once with
// HELLO and then remembered.
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
		return 0, errors.New("sierradb: server reports no partitions")
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
