package embedded

import (
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
)

// AppendMulti stores events atomically in the partition of partitionKey
// with the rules of EMAPPEND (like sierradb.Client.AppendMulti): every expected version is checked (each against the
// state left by the earlier events) before anything is written, strict
// versioning applies unless Config.RelaxedVersioning is set, and the events
// share one transaction id and get consecutive partition sequences. A zero
// NewEvent.ID is generated and a zero Timestamp takes the server clock.
//
// Errors are those a [sierradb] client would return for the same reply: a
// [*sierradb.WrongExpectedVersionError] for a version mismatch and a
// [*sierradb.ServerError] otherwise; [ErrClosed] after [Server.Close].
func (s *Server) AppendMulti(partitionKey uuid.UUID, events ...sierradb.NewEvent) (sierradb.MultiAppendResult, error) {
	evs := make([]newEvent, len(events))
	for i, e := range events {
		if err := s.checkStrict(e.ExpectedVersion); err != nil {
			return sierradb.MultiAppendResult{}, publicError(err)
		}
		ne, err := toNewEvent(e)
		if err != nil {
			return sierradb.MultiAppendResult{}, publicError(err)
		}
		evs[i] = ne
	}
	res, err := s.store.append(partitionKey, evs, s.now(), msgEventIDHashInvalid)
	if err != nil {
		return sierradb.MultiAppendResult{}, publicError(err)
	}
	out := sierradb.MultiAppendResult{
		PartitionKey:           res.key,
		PartitionID:            res.pid,
		FirstPartitionSequence: res.events[0].seq,
		LastPartitionSequence:  res.events[len(res.events)-1].seq,
		Events:                 make([]sierradb.AppendedEvent, len(res.events)),
	}
	for i, e := range res.events {
		out.Events[i] = sierradb.AppendedEvent{
			EventID:           e.id,
			StreamID:          e.streamID,
			StreamVersion:     e.version,
			PartitionSequence: e.seq,
			Timestamp:         time.UnixMilli(e.timestampMillis()),
		}
	}
	return out, nil
}

func toNewEvent(e sierradb.NewEvent) (newEvent, error) {
	ne := newEvent{
		streamID: e.StreamID,
		name:     e.Name,
		id:       e.ID,
		hasID:    e.ID != uuid.Nil,
		expected: e.ExpectedVersion,
		payload:  cloneBytes(e.Payload),
		metadata: cloneBytes(e.Metadata),
	}
	if !e.Timestamp.IsZero() {
		ms := e.Timestamp.UnixMilli()
		if ms < 0 {
			return newEvent{}, cmdError(msgSystemTime)
		}
		if uint64(ms) > ^uint64(0)/1_000_000 {
			return newEvent{}, cmdError(msgTimestampFormat)
		}
		ne.tsNanos, ne.hasTS = uint64(ms)*1_000_000, true
	}
	return ne, nil
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// AppendStream appends one event at the end of a stream under its default
// partition key, whatever the stream holds and whatever the versioning
// mode: a seeding helper. Use [Server.AppendMulti] for the checked path.
func (s *Server) AppendStream(streamID, name string, payload []byte) (sierradb.AppendResult, error) {
	key := sierradb.StreamPartitionKey(streamID)
	res, err := s.store.append(key, []newEvent{{
		streamID: streamID,
		name:     name,
		expected: sierradb.ExpectAny,
		payload:  cloneBytes(payload),
	}}, s.now(), msgEventIDHash)
	if err != nil {
		return sierradb.AppendResult{}, publicError(err)
	}
	e := res.events[0]
	return sierradb.AppendResult{
		EventID:           e.id,
		PartitionKey:      e.key,
		PartitionID:       e.pid,
		PartitionSequence: e.seq,
		StreamVersion:     e.version,
		Timestamp:         time.UnixMilli(e.timestampMillis()),
	}, nil
}

// Stream returns every event of a stream written with its default partition
// key (UUIDv5 of the stream id), in version order.
func (s *Server) Stream(streamID string) []sierradb.Event {
	return s.StreamWithKey(sierradb.StreamPartitionKey(streamID), streamID)
}

// StreamWithKey returns every event of the stream (partitionKey, streamID),
// in version order. A stream bound to another key reads as empty.
func (s *Server) StreamWithKey(partitionKey uuid.UUID, streamID string) []sierradb.Event {
	var out []sierradb.Event
	for from := uint64(0); ; {
		evs, err := s.store.fetchStream(partitionKey, streamID, from, 1024, nil)
		if err != nil {
			return out // logged by the store
		}
		for _, e := range evs {
			out = append(out, e.public())
		}
		if len(evs) < 1024 {
			return out
		}
		from += uint64(len(evs))
	}
}

// Partition returns every event of a partition in sequence order, or nil
// for an id at or beyond the partition count.
func (s *Server) Partition(id uint16) []sierradb.Event {
	if id >= s.cfg.PartitionCount {
		return nil
	}
	var out []sierradb.Event
	for from := uint64(0); ; {
		evs, err := s.store.fetchPartition(id, from, 1024, nil)
		if err != nil {
			return out // logged by the store
		}
		for _, e := range evs {
			out = append(out, e.public())
		}
		if len(evs) < 1024 {
			return out
		}
		from += uint64(len(evs))
	}
}

// Event returns the event with the given id, as EGET does. If several events
// were stored with one id (SierraDB does not reject duplicate EVENT_IDs), the
// most recent one is returned.
func (s *Server) Event(id uuid.UUID) (sierradb.Event, bool) {
	e, err := s.store.eventByID(id)
	if e == nil || err != nil {
		return sierradb.Event{}, false
	}
	return e.public(), true
}
