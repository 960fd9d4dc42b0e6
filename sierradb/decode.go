package sierradb

import (
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// replyTypeError reports a reply of an unexpected shape.
func replyTypeError(cmd string, v any) error {
	return fmt.Errorf("sierradb: unexpected %s reply of type %T", cmd, v)
}

func asMap(v any) (map[any]any, error) {
	m, ok := v.(map[any]any)
	if !ok {
		return nil, fmt.Errorf("sierradb: expected a map reply, got %T", v)
	}
	return m, nil
}

// decoder reads typed fields from a go-redis map reply, keeping the first
// error.
type decoder struct {
	m   map[any]any
	err error
}

func (d *decoder) fail(key string, v any) {
	if d.err == nil {
		d.err = fmt.Errorf("sierradb: reply field %q has unexpected value %T(%v)", key, v, v)
	}
}

func (d *decoder) str(key string) string {
	v := d.m[key]
	s, ok := v.(string)
	if !ok {
		d.fail(key, v)
	}
	return s
}

func (d *decoder) bytes(key string) []byte {
	v := d.m[key]
	switch s := v.(type) {
	case string:
		if s == "" {
			return nil
		}
		return []byte(s)
	case nil:
		return nil
	}
	d.fail(key, v)
	return nil
}

func (d *decoder) uint(key string) uint64 {
	v := d.m[key]
	switch n := v.(type) {
	case int64:
		if n >= 0 {
			return uint64(n)
		}
	case string:
		if u, err := strconv.ParseUint(n, 10, 64); err == nil {
			return u
		}
	}
	d.fail(key, v)
	return 0
}

func (d *decoder) uuid(key string) uuid.UUID {
	s := d.str(key)
	if d.err != nil {
		return uuid.Nil
	}
	id, err := uuid.Parse(s)
	if err != nil {
		d.fail(key, s)
	}
	return id
}

func (d *decoder) millis(key string) time.Time {
	return time.UnixMilli(int64(d.uint(key))).UTC()
}

func eventFromMap(m map[any]any) (Event, error) {
	d := decoder{m: m}
	ev := Event{
		ID:                d.uuid("event_id"),
		PartitionKey:      d.uuid("partition_key"),
		PartitionID:       uint16(d.uint("partition_id")),
		TransactionID:     d.uuid("transaction_id"),
		PartitionSequence: d.uint("partition_sequence"),
		StreamVersion:     d.uint("stream_version"),
		Timestamp:         d.millis("timestamp"),
		StreamID:          d.str("stream_id"),
		Name:              d.str("event_name"),
		Metadata:          d.bytes("metadata"),
		Payload:           d.bytes("payload"),
	}
	return ev, d.err
}

func scanPage(v any) (ScanPage, error) {
	m, err := asMap(v)
	if err != nil {
		return ScanPage{}, err
	}
	hasMore, ok := m["has_more"].(bool)
	if !ok {
		return ScanPage{}, fmt.Errorf("sierradb: scan reply without has_more")
	}
	list, ok := m["events"].([]any)
	if !ok {
		return ScanPage{}, fmt.Errorf("sierradb: scan reply without events")
	}
	page := ScanPage{HasMore: hasMore, Events: make([]Event, 0, len(list))}
	for _, item := range list {
		em, err := asMap(item)
		if err != nil {
			return ScanPage{}, err
		}
		ev, err := eventFromMap(em)
		if err != nil {
			return ScanPage{}, err
		}
		page.Events = append(page.Events, ev)
	}
	return page, nil
}
