package sierradb

import "github.com/google/uuid"

// Each call takes options of its own type, so that an option that does not
// apply to a call does not compile: [WithPartitionKey] applies to the calls
// that address a stream (Append, Scan, ScanAll, StreamVersion,
// SubscribeStream), [WithCount] to the scans (Scan, ScanAll,
// PartitionScan). PartitionScan takes no partition key: a partition is
// addressed by its id.

// AppendOption adjusts one [Client.Append].
type AppendOption interface{ applyAppend(*streamOptions) }

// ScanOption adjusts one [Client.Scan] or [Client.ScanAll].
type ScanOption interface{ applyScan(*streamOptions) }

// PartitionScanOption adjusts one [Client.PartitionScan].
type PartitionScanOption interface{ applyPartitionScan(*streamOptions) }

// StreamVersionOption adjusts one [Client.StreamVersion].
type StreamVersionOption interface{ applyStreamVersion(*streamOptions) }

// SubscribeOption adjusts one [Client.SubscribeStream].
type SubscribeOption interface{ applySubscribe(*streamOptions) }

// streamOptions holds every per-call setting; each call reads the ones its
// option types can set.
type streamOptions struct {
	partitionKey *uuid.UUID
	count        int
}

// keyOf returns the partition key a call on streamID uses.
func (o streamOptions) keyOf(streamID string) uuid.UUID {
	if o.partitionKey != nil {
		return *o.partitionKey
	}
	return StreamPartitionKey(streamID)
}

// PartitionKeyOption is the option made by [WithPartitionKey].
type PartitionKeyOption struct{ key uuid.UUID }

// WithPartitionKey sets the partition key of a call that addresses a
// stream. A stream is bound to the key it was first written with, so a
// stream written with a custom key must be read with it too.
// Default: [StreamPartitionKey] of the stream id.
func WithPartitionKey(key uuid.UUID) PartitionKeyOption { return PartitionKeyOption{key: key} }

func (o PartitionKeyOption) set(c *streamOptions)                { k := o.key; c.partitionKey = &k }
func (o PartitionKeyOption) applyAppend(c *streamOptions)        { o.set(c) }
func (o PartitionKeyOption) applyScan(c *streamOptions)          { o.set(c) }
func (o PartitionKeyOption) applyStreamVersion(c *streamOptions) { o.set(c) }
func (o PartitionKeyOption) applySubscribe(c *streamOptions)     { o.set(c) }

// CountOption is the option made by [WithCount].
type CountOption struct{ n int }

// WithCount sets the page size of a scan. Default: 100 for [Client.Scan]
// and [Client.PartitionScan] (the server's default), 1000 for
// [Client.ScanAll].
func WithCount(n int) CountOption { return CountOption{n: n} }

func (o CountOption) applyScan(c *streamOptions)          { c.count = o.n }
func (o CountOption) applyPartitionScan(c *streamOptions) { c.count = o.n }

func appendOptions(opts []AppendOption) streamOptions {
	var o streamOptions
	for _, opt := range opts {
		opt.applyAppend(&o)
	}
	return o
}

func scanOptions(opts []ScanOption) streamOptions {
	var o streamOptions
	for _, opt := range opts {
		opt.applyScan(&o)
	}
	return o
}

func partitionScanOptions(opts []PartitionScanOption) streamOptions {
	var o streamOptions
	for _, opt := range opts {
		opt.applyPartitionScan(&o)
	}
	return o
}

func streamVersionOptions(opts []StreamVersionOption) streamOptions {
	var o streamOptions
	for _, opt := range opts {
		opt.applyStreamVersion(&o)
	}
	return o
}

func subscribeOptions(opts []SubscribeOption) streamOptions {
	var o streamOptions
	for _, opt := range opts {
		opt.applySubscribe(&o)
	}
	return o
}
