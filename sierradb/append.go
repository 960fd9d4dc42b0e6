package sierradb

import (
	"context"
	"fmt"
	"strconv"

	"github.com/google/uuid"
)

func checkNewEvent(ev NewEvent) error {
	if err := ValidateStreamID(ev.StreamID); err != nil {
		return err
	}
	if ev.Name == "" || len(ev.Name) > MaxEventNameLen {
		return fmt.Errorf("sierradb: event name of %d bytes: %w", len(ev.Name), ErrInvalidArgument)
	}
	return nil
}

func appendEventArgs(args []any, ev NewEvent) []any {
	if ev.ID != uuid.Nil {
		args = append(args, "EVENT_ID", ev.ID.String())
	}
	if !ev.ExpectedVersion.IsAny() {
		args = append(args, "EXPECTED_VERSION", ev.ExpectedVersion.String())
	}
	if !ev.Timestamp.IsZero() {
		args = append(args, "TIMESTAMP", strconv.FormatInt(ev.Timestamp.UnixMilli(), 10))
	}
	if len(ev.Payload) > 0 {
		args = append(args, "PAYLOAD", ev.Payload)
	}
	if len(ev.Metadata) > 0 {
		args = append(args, "METADATA", ev.Metadata)
	}
	return args
}

// Append stores one event (EAPPEND). The partition key defaults to
// [StreamPartitionKey] of the stream; see [WithPartitionKey].
func (c *Client) Append(ctx context.Context, ev NewEvent, opts ...AppendOption) (AppendResult, error) {
	if err := checkNewEvent(ev); err != nil {
		return AppendResult{}, err
	}
	o := appendOptions(opts)
	args := make([]any, 0, 16)
	args = append(args, "EAPPEND", ev.StreamID, ev.Name)
	if o.partitionKey != nil {
		args = append(args, "PARTITION_KEY", o.partitionKey.String())
	}
	args = appendEventArgs(args, ev)
	v, err := c.do(ctx, args...)
	if err != nil {
		return AppendResult{}, fmt.Errorf("sierradb: append to %q: %w", ev.StreamID, err)
	}
	m, err := asMap(v)
	if err != nil {
		return AppendResult{}, err
	}
	var r AppendResult
	d := decoder{m: m}
	r.EventID = d.uuid("event_id")
	r.PartitionKey = d.uuid("partition_key")
	r.PartitionID = uint16(d.uint("partition_id"))
	r.PartitionSequence = d.uint("partition_sequence")
	r.StreamVersion = d.uint("stream_version")
	r.Timestamp = d.millis("timestamp")
	return r, d.err
}

// AppendMulti stores events atomically in the one partition of partitionKey
// (EMAPPEND): either every event is stored, or none. The events may belong to
// several streams, and a stream may appear more than once; each expected
// version is checked against the state left by the events before it.
// Every stream written this way is bound to partitionKey.
func (c *Client) AppendMulti(ctx context.Context, partitionKey uuid.UUID, events []NewEvent) (MultiAppendResult, error) {
	if len(events) == 0 {
		return MultiAppendResult{}, fmt.Errorf("sierradb: append of no events: %w", ErrInvalidArgument)
	}
	args := make([]any, 0, 2+len(events)*10)
	args = append(args, "EMAPPEND", partitionKey.String())
	for _, ev := range events {
		if err := checkNewEvent(ev); err != nil {
			return MultiAppendResult{}, err
		}
		args = append(args, ev.StreamID, ev.Name)
		args = appendEventArgs(args, ev)
	}
	v, err := c.do(ctx, args...)
	if err != nil {
		return MultiAppendResult{}, fmt.Errorf("sierradb: multi-append to partition key %s: %w", partitionKey, err)
	}
	m, err := asMap(v)
	if err != nil {
		return MultiAppendResult{}, err
	}
	d := decoder{m: m}
	r := MultiAppendResult{
		PartitionKey:           d.uuid("partition_key"),
		PartitionID:            uint16(d.uint("partition_id")),
		FirstPartitionSequence: d.uint("first_partition_sequence"),
		LastPartitionSequence:  d.uint("last_partition_sequence"),
	}
	list, _ := m["events"].([]any)
	if d.err == nil && len(list) != len(events) {
		d.err = fmt.Errorf("sierradb: multi-append reply has %d events, sent %d", len(list), len(events))
	}
	r.Events = make([]AppendedEvent, 0, len(list))
	for i, item := range list {
		em, err := asMap(item)
		if err != nil {
			return r, err
		}
		ed := decoder{m: em}
		r.Events = append(r.Events, AppendedEvent{
			EventID:           ed.uuid("event_id"),
			StreamID:          ed.str("stream_id"),
			StreamVersion:     ed.uint("stream_version"),
			PartitionSequence: r.FirstPartitionSequence + uint64(i),
			Timestamp:         ed.millis("timestamp"),
		})
		if ed.err != nil {
			return r, ed.err
		}
	}
	return r, d.err
}
