package sierradb

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	if c.cl != nil && ev.ID == uuid.Nil {
		// A cluster client names the event, so that it can recognise it
		// after an attempt whose outcome it does not know.
		ev.ID = NewEventID(o.keyOf(ev.StreamID))
	}
	args := make([]any, 0, 16)
	args = append(args, "EAPPEND", ev.StreamID, ev.Name)
	if o.partitionKey != nil {
		args = append(args, "PARTITION_KEY", o.partitionKey.String())
	}
	args = appendEventArgs(args, ev)
	v, err := c.doAppend(ctx, o.keyOf(ev.StreamID), []NewEvent{ev}, args)
	if errors.Is(err, errLanded) {
		got, gerr := c.Get(ctx, ev.ID)
		if gerr != nil {
			return AppendResult{}, fmt.Errorf("sierradb: append to %q: read back: %w", ev.StreamID, gerr)
		}
		return AppendResult{EventID: got.ID, PartitionKey: got.PartitionKey, PartitionID: got.PartitionID,
			PartitionSequence: got.PartitionSequence, StreamVersion: got.StreamVersion, Timestamp: got.Timestamp}, nil
	}
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
	if c.cl != nil {
		events = slices.Clone(events)
		for i := range events {
			if events[i].ID == uuid.Nil {
				events[i].ID = NewEventID(partitionKey)
			}
		}
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
	v, err := c.doAppend(ctx, partitionKey, events, args)
	if errors.Is(err, errLanded) {
		return c.readBackMulti(ctx, partitionKey, events)
	}
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

// errLanded tells Append and AppendMulti that a cluster append's events
// were found stored after an attempt whose outcome was unknown.
var errLanded = errors.New("sierradb: append landed")

// doAppend sends an append: to the server, or on a cluster to the
// partition's coordinator with failover (see cluster.doWrite).
func (c *Client) doAppend(ctx context.Context, key uuid.UUID, events []NewEvent, args []any) (any, error) {
	if c.cl == nil {
		return c.do(ctx, args...)
	}
	if c.isClosed() {
		return nil, ErrClosed
	}
	p, err := c.PartitionOf(ctx, key)
	if err != nil {
		return nil, err
	}
	spec := writeSpec{exact: true}
	for _, ev := range events {
		if _, ok := ev.ExpectedVersion.Exact(); !ok && !ev.ExpectedVersion.IsEmpty() {
			spec.exact = false
		}
	}
	first := events[0]
	spec.landed = func(ctx context.Context) (bool, error) {
		_, err := c.Get(ctx, first.ID)
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	spec.conflictCovers = func(w *WrongExpectedVersionError) bool {
		// The conflict is about a stream of this append whose current
		// version reaches past what the append expected: possibly this
		// append's own event.
		for _, ev := range events {
			if ev.StreamID != w.StreamID {
				continue
			}
			want, ok := ev.ExpectedVersion.Exact()
			if ev.ExpectedVersion.IsEmpty() {
				return w.Current >= 0
			}
			return ok && w.Current > int64(want)
		}
		return false
	}
	v, landed, err := c.cl.doWrite(ctx, p, spec, args...)
	if landed {
		return nil, errLanded
	}
	return v, err
}

// readBackMulti builds the result of a multi-append found stored after an
// attempt whose outcome was unknown.
func (c *Client) readBackMulti(ctx context.Context, key uuid.UUID, events []NewEvent) (MultiAppendResult, error) {
	r := MultiAppendResult{PartitionKey: key}
	for i, ev := range events {
		got, err := c.Get(ctx, ev.ID)
		if err != nil {
			return MultiAppendResult{}, fmt.Errorf("sierradb: multi-append to partition key %s: read back: %w", key, err)
		}
		if i == 0 {
			r.PartitionID = got.PartitionID
			r.FirstPartitionSequence = got.PartitionSequence
		}
		r.LastPartitionSequence = got.PartitionSequence
		r.Events = append(r.Events, AppendedEvent{EventID: got.ID, StreamID: got.StreamID,
			StreamVersion: got.StreamVersion, PartitionSequence: got.PartitionSequence, Timestamp: got.Timestamp})
	}
	return r, nil
}
