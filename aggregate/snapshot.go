package aggregate

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/sierradb"
)

// Snapshot is a saved entity state.
type Snapshot struct {
	// Version is the stream version the state includes.
	Version uint64
	// Schema is the entity type's snapshot schema version.
	Schema int
	// Data is the encoded state and tracking.
	Data []byte
}

// SnapshotStore keeps the latest snapshot per stream.
type SnapshotStore interface {
	// LoadSnapshot returns the latest snapshot of a stream, or false.
	LoadSnapshot(ctx context.Context, streamID string) (Snapshot, bool, error)
	// SaveSnapshot stores a snapshot. It may keep older ones.
	SaveSnapshot(ctx context.Context, streamID string, s Snapshot) error
}

type snapshotPolicy struct {
	every  int
	schema int
}

// WithSnapshots saves the state every `every` events, tagged with a schema
// version: bump it whenever S changes shape, and old snapshots are ignored
// (the entity is rebuilt from its events). The state must round-trip
// through CBOR (exported fields). Where snapshots go is the executor's
// Config.Snapshots.
func WithSnapshots[S any](every, schema int) Option[S] {
	return optionFunc[S](func(b *typeBuilder[S]) error {
		if every < 1 {
			return fmt.Errorf("aggregate: snapshot interval %d must be at least 1", every)
		}
		b.snapshots = &snapshotPolicy{every: every, schema: schema}
		return nil
	})
}

// snapshotRecord is what a snapshot's Data holds.
type snapshotRecord struct {
	State    []byte    `cbor:"s"`
	Tracking *tracking `cbor:"t"`
	Key      uuid.UUID `cbor:"k"`
	// At is when the snapshot was taken (ms); 0 in snapshots written
	// before it was recorded, whose command ids then count from the
	// time they are loaded.
	At int64 `cbor:"a,omitempty"`
}

func (x *Executor) loadSnapshot(ctx context.Context, k kind, e *entity, p *snapshotPolicy) error {
	if x.snapshots == nil {
		return nil
	}
	snap, ok, err := x.snapshots.LoadSnapshot(ctx, e.streamID)
	if err != nil || !ok {
		return err
	}
	if snap.Schema != p.schema {
		return fmt.Errorf("snapshot schema %d, the type's is %d", snap.Schema, p.schema)
	}
	var rec snapshotRecord
	if err := codec.Unmarshal(codec.CBOR, snap.Data, &rec); err != nil {
		return err
	}
	if rec.Key != e.key {
		return fmt.Errorf("snapshot of partition key %s, the entity's is %s", rec.Key, e.key)
	}
	state, err := k.decodeState(rec.State)
	if err != nil {
		return err
	}
	if rec.Tracking == nil {
		rec.Tracking = newTracking(x.ids, k.rateLimits())
	}
	now := x.cfg.Now().UnixMilli()
	at := rec.At
	if at == 0 {
		at = now
	}
	rec.Tracking.restore(x.ids, k.rateLimits(), at, now)
	e.state, e.version, e.tracking = state, int64(snap.Version), rec.Tracking
	x.tel.snapLoads.Add(ctx, 1, x.tel.byCategory.Get(k.Category()).Add...)
	return nil
}

// maybeSnapshot saves a snapshot when enough events have passed. A failure
// is logged: snapshots only save time.
func (x *Executor) maybeSnapshot(ctx context.Context, k kind, e *entity) {
	p := k.snapshotPolicy()
	if p == nil || x.snapshots == nil || e.sinceSnapshot < p.every || e.version < 0 {
		return
	}
	err := func() error {
		state, err := k.encodeState(e.state)
		if err != nil {
			return err
		}
		e.tracking.prepareSnapshot()
		data, err := codec.Marshal(codec.CBOR, snapshotRecord{State: state, Tracking: e.tracking, Key: e.key, At: x.cfg.Now().UnixMilli()})
		e.tracking.clearSnapshot()
		if err != nil {
			return err
		}
		return x.snapshots.SaveSnapshot(ctx, e.streamID, Snapshot{Version: uint64(e.version), Schema: p.schema, Data: data})
	}()
	if err != nil {
		x.cfg.Logger.Warn("aggregate: snapshot not saved", "stream", e.streamID, "error", err)
		return
	}
	e.sinceSnapshot = 0
	x.tel.snapSaves.Add(ctx, 1, x.tel.byCategory.Get(k.Category()).Add...)
}

// snapshotClient is what the SierraDB snapshot store needs of a client.
type snapshotClient interface {
	AppendMulti(ctx context.Context, key uuid.UUID, events []sierradb.NewEvent) (sierradb.MultiAppendResult, error)
	Scan(ctx context.Context, streamID string, from, to uint64, opts ...sierradb.ScanOption) (sierradb.ScanPage, error)
	StreamVersion(ctx context.Context, streamID string, opts ...sierradb.StreamVersionOption) (int64, error)
}

// SierraSnapshots keeps snapshots in SierraDB, in a stream per entity named
// "<category>:snapshot-<id>" (kameo_es's naming convention for snapshot
// streams, which projections keyed on the entity category ignore). Its
// events are named "Snapshot"; the payload is the CBOR record.
type SierraSnapshots struct {
	client snapshotClient
}

// NewSierraSnapshots returns a snapshot store on a SierraDB client.
func NewSierraSnapshots(client snapshotClient) *SierraSnapshots {
	return &SierraSnapshots{client: client}
}

// ErrNoSnapshotStream: the entity's snapshot stream id would be longer than
// SierraDB allows.
var ErrNoSnapshotStream = errors.New("aggregate: stream id too long for a snapshot stream")

func snapshotStream(streamID string) (string, error) {
	cat, id, ok := cutCategory(streamID)
	if !ok {
		return "", fmt.Errorf("aggregate: %q is not an entity stream", streamID)
	}
	s := cat + ":snapshot-" + id
	if len(s) > sierradb.MaxStreamIDLen {
		return "", ErrNoSnapshotStream
	}
	return s, nil
}

func cutCategory(streamID string) (string, string, bool) {
	for i := 0; i < len(streamID); i++ {
		if streamID[i] == '-' {
			return streamID[:i], streamID[i+1:], true
		}
	}
	return "", "", false
}

type snapshotEvent struct {
	Version uint64 `cbor:"v"`
	Schema  int    `cbor:"s"`
	Data    []byte `cbor:"d"`
}

// LoadSnapshot reads the last event of the snapshot stream.
func (s *SierraSnapshots) LoadSnapshot(ctx context.Context, streamID string) (Snapshot, bool, error) {
	stream, err := snapshotStream(streamID)
	if err != nil {
		return Snapshot{}, false, nil
	}
	v, err := s.client.StreamVersion(ctx, stream)
	if err != nil || v < 0 {
		return Snapshot{}, false, err
	}
	page, err := s.client.Scan(ctx, stream, uint64(v), sierradb.End, sierradb.WithCount(1))
	if err != nil || len(page.Events) == 0 {
		return Snapshot{}, false, err
	}
	var ev snapshotEvent
	if err := codec.Unmarshal(codec.CBOR, page.Events[0].Payload, &ev); err != nil {
		return Snapshot{}, false, err
	}
	return Snapshot{Version: ev.Version, Schema: ev.Schema, Data: ev.Data}, true, nil
}

// SaveSnapshot appends a snapshot event. A concurrent writer's snapshot
// wins a conflict; that is fine.
func (s *SierraSnapshots) SaveSnapshot(ctx context.Context, streamID string, snap Snapshot) error {
	stream, err := snapshotStream(streamID)
	if err != nil {
		return err
	}
	payload, err := codec.Marshal(codec.CBOR, snapshotEvent{Version: snap.Version, Schema: snap.Schema, Data: snap.Data})
	if err != nil {
		return err
	}
	v, err := s.client.StreamVersion(ctx, stream)
	if err != nil {
		return err
	}
	_, err = s.client.AppendMulti(ctx, sierradb.StreamPartitionKey(stream), []sierradb.NewEvent{{
		StreamID: stream, Name: "Snapshot", ExpectedVersion: sierradb.ExpectAfter(v), Payload: payload,
	}})
	if errors.Is(err, sierradb.ErrWrongExpectedVersion) {
		return nil
	}
	return err
}
