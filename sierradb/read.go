package sierradb

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strconv"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Get reads one event by id (EGET). An absent event gives [ErrNotFound].
func (c *Client) Get(ctx context.Context, eventID uuid.UUID) (Event, error) {
	p, err := c.partitionOnCluster(ctx, func() [16]byte { return eventID })
	if err != nil {
		return Event{}, err
	}
	v, err := c.doRead(ctx, p, "EGET", eventID.String())
	if errors.Is(err, redis.Nil) {
		return Event{}, fmt.Errorf("sierradb: event %s: %w", eventID, ErrNotFound)
	}
	if err != nil {
		return Event{}, fmt.Errorf("sierradb: get %s: %w", eventID, err)
	}
	m, err := asMap(v)
	if err != nil {
		return Event{}, err
	}
	return eventFromMap(m)
}

func rangeArgs(from, to uint64) (string, string) {
	end := "+"
	if to != End {
		end = strconv.FormatUint(to, 10)
	}
	return strconv.FormatUint(from, 10), end
}

// Scan reads events of a stream with versions from..to, both inclusive
// (ESCAN). Pass [End] as to for no upper bound. At most one page is
// returned; see [Client.ScanAll] to read to the end.
func (c *Client) Scan(ctx context.Context, streamID string, from, to uint64, opts ...ScanOption) (ScanPage, error) {
	if err := ValidateStreamID(streamID); err != nil {
		return ScanPage{}, err
	}
	o := scanOptions(opts)
	start, end := rangeArgs(from, to)
	args := []any{"ESCAN", streamID, start, end}
	if o.partitionKey != nil {
		args = append(args, "PARTITION_KEY", o.partitionKey.String())
	}
	if o.count > 0 {
		args = append(args, "COUNT", strconv.Itoa(o.count))
	}
	p, err := c.partitionOnCluster(ctx, func() [16]byte { return o.keyOf(streamID) })
	if err != nil {
		return ScanPage{}, err
	}
	v, err := c.doRead(ctx, p, args...)
	if err != nil {
		return ScanPage{}, fmt.Errorf("sierradb: scan %q: %w", streamID, err)
	}
	return scanPage(v)
}

// ScanAll iterates over a stream from version from to its end, one page at
// a time. The iteration stops at the first error, which it yields.
func (c *Client) ScanAll(ctx context.Context, streamID string, from uint64, opts ...ScanOption) iter.Seq2[Event, error] {
	o := scanOptions(opts)
	if o.count <= 0 {
		opts = append(opts, WithCount(1000))
	}
	return func(yield func(Event, error) bool) {
		next := from
		for {
			page, err := c.Scan(ctx, streamID, next, End, opts...)
			if err != nil {
				yield(Event{}, err)
				return
			}
			for _, ev := range page.Events {
				if !yield(ev, nil) {
					return
				}
				next = ev.StreamVersion + 1
			}
			if !page.HasMore || len(page.Events) == 0 {
				return
			}
		}
	}
}

// PartitionScan reads events of a partition with sequences from..to (EPSCAN).
// Pass [End] as to for no upper bound.
//
// SierraDB 0.3.1 treats an explicit upper bound at or below the partition's
// head as exclusive; the embedded server treats it as inclusive. Use [End]
// and stop on the sequence to get the same result from both.
func (c *Client) PartitionScan(ctx context.Context, partition uint16, from, to uint64, opts ...PartitionScanOption) (ScanPage, error) {
	o := partitionScanOptions(opts)
	start, end := rangeArgs(from, to)
	args := []any{"EPSCAN", strconv.Itoa(int(partition)), start, end}
	if o.count > 0 {
		args = append(args, "COUNT", strconv.Itoa(o.count))
	}
	v, err := c.doRead(ctx, partition, args...)
	if err != nil {
		return ScanPage{}, fmt.Errorf("sierradb: scan partition %d: %w", partition, err)
	}
	return scanPage(v)
}

// StreamVersion returns the latest version of a stream (ESVER), or -1 when
// the stream has no event.
func (c *Client) StreamVersion(ctx context.Context, streamID string, opts ...StreamVersionOption) (int64, error) {
	if err := ValidateStreamID(streamID); err != nil {
		return 0, err
	}
	o := streamVersionOptions(opts)
	args := []any{"ESVER", streamID}
	if o.partitionKey != nil {
		args = append(args, "PARTITION_KEY", o.partitionKey.String())
	}
	p, err := c.partitionOnCluster(ctx, func() [16]byte { return o.keyOf(streamID) })
	if err != nil {
		return 0, err
	}
	v, err := c.doRead(ctx, p, args...)
	if errors.Is(err, redis.Nil) {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sierradb: version of %q: %w", streamID, err)
	}
	n, ok := v.(int64)
	if !ok {
		return 0, replyTypeError("ESVER", v)
	}
	return n, nil
}

// PartitionSequence returns the latest sequence of a partition (EPSEQ), or
// -1 when the partition has no event.
func (c *Client) PartitionSequence(ctx context.Context, partition uint16) (int64, error) {
	v, err := c.doRead(ctx, partition, "EPSEQ", strconv.Itoa(int(partition)))
	if errors.Is(err, redis.Nil) {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sierradb: sequence of partition %d: %w", partition, err)
	}
	n, ok := v.(int64)
	if !ok {
		return 0, replyTypeError("EPSEQ", v)
	}
	return n, nil
}

// PartitionSequences returns the latest sequence of each listed partition
// (-1 when empty), in one round trip.
func (c *Client) PartitionSequences(ctx context.Context, partitions []uint16) (map[uint16]int64, error) {
	if c.isClosed() {
		return nil, ErrClosed
	}
	if c.cl != nil {
		return c.cl.partitionSequences(ctx, partitions)
	}
	return pipelineSequences(ctx, c.rdb, partitions)
}

// pipelineSequences reads the heads of partitions from one server in one
// round trip.
func pipelineSequences(ctx context.Context, rdb *redis.Client, partitions []uint16) (map[uint16]int64, error) {
	pipe := rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(partitions))
	for i, p := range partitions {
		cmds[i] = pipe.Do(ctx, "EPSEQ", strconv.Itoa(int(p)))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("sierradb: partition sequences: %w", convertErr(err))
	}
	out := make(map[uint16]int64, len(partitions))
	for i, p := range partitions {
		v, err := cmds[i].Result()
		switch {
		case errors.Is(err, redis.Nil):
			out[p] = -1
		case err != nil:
			return nil, fmt.Errorf("sierradb: sequence of partition %d: %w", p, convertErr(err))
		default:
			n, ok := v.(int64)
			if !ok {
				return nil, replyTypeError("EPSEQ", v)
			}
			out[p] = n
		}
	}
	return out, nil
}
