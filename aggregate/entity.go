package aggregate

import (
	"container/list"
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/semaphore"

	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/internal/backoff"
	"github.com/esmill/esmill/sierradb"
)

// entity is one cached entity. Everything but the cache bookkeeping
// (refs, lastUsed, elem; guarded by the cache's mutex) is guarded by lock.
type entity struct {
	streamID string
	// lock serialises the entity's commands: a weighted semaphore of one
	// is a mutex that serves waiters in arrival order (FIFO) and whose
	// wait a context can abandon.
	lock *semaphore.Weighted
	// arrivals counts the commands that reached lock, for tests that
	// submit in a known order.
	arrivals atomic.Uint64
	// holder is the transaction holding lock, if any.
	holder atomic.Pointer[txState]

	refs     int
	lastUsed time.Time
	elem     *list.Element

	loaded        bool
	stale         bool
	key           uuid.UUID
	state         any // *S
	version       int64
	tracking      *tracking
	sinceSnapshot int
	// minVersion is a version the server is known to have reached (from a
	// conflict), which the next load must wait to see.
	minVersion int64
	// fence is the hold under which the state was last known current,
	// if fenced (see Fence).
	fence  fenceKey
	fenced bool
}

// reset forgets the loaded state, so that the next command reloads it.
func (e *entity) reset() {
	e.loaded, e.stale, e.state, e.tracking, e.fenced = false, false, nil, nil, false
}

// load brings the entity up to date: from a snapshot or scratch if it is
// not loaded, otherwise from the version after its own. Because SierraDB
// makes appends visible asynchronously, it keeps reading until it has
// reached minVersion (bounded by the executor's VisibilityTimeout; tested:
// TestConflictWaitBoundedByVisibilityTimeout).
func (x *Executor) load(ctx context.Context, k kind, e *entity, key uuid.UUID) error {
	if !e.loaded {
		e.state, e.version, e.tracking, e.sinceSnapshot = k.newState(), -1, newTracking(x.ids, k.rateLimits()), 0
		e.key = key
		if p := k.snapshotPolicy(); p != nil {
			if err := x.loadSnapshot(ctx, k, e, p); err != nil {
				x.cfg.Logger.Warn("aggregate: snapshot not used", "stream", e.streamID, "error", err)
				e.state, e.version, e.tracking = k.newState(), -1, newTracking(x.ids, k.rateLimits())
			}
		}
	}
	deadline := time.Now().Add(x.cfg.VisibilityTimeout)
	for {
		if _, err := x.catchUp(ctx, k, e); err != nil {
			e.reset()
			return err
		}
		if e.version >= e.minVersion {
			e.loaded, e.stale = true, false
			return nil
		}
		if time.Now().After(deadline) {
			e.reset()
			return fmt.Errorf("aggregate: %s: version %d not visible after %s (at %d)", e.streamID, e.minVersion, x.cfg.VisibilityTimeout, e.version)
		}
		if err := backoff.Sleep(ctx, 2*time.Millisecond); err != nil {
			e.reset()
			return err
		}
	}
}

// catchUp applies every stored event after the entity's version and
// returns how many there were. On an error the state may hold some of
// them: the caller resets the entity.
func (x *Executor) catchUp(ctx context.Context, k kind, e *entity) (int, error) {
	n := 0
	for {
		page, err := x.scan(ctx, e.streamID, uint64(e.version+1), sierradb.End,
			sierradb.WithPartitionKey(e.key), sierradb.WithCount(x.cfg.ScanPageSize))
		if err != nil {
			return n, fmt.Errorf("aggregate: load %s: %w", e.streamID, err)
		}
		now := x.cfg.Now().UnixMilli()
		for _, ev := range page.Events {
			want := uint64(e.version + 1)
			if ev.StreamVersion != want {
				return n, &VersionGapError{StreamID: e.streamID, Want: want, Got: ev.StreamVersion}
			}
			m, err := k.applyStored(e.state, ev)
			if err != nil {
				return n, err
			}
			e.tracking.record(m, ev.TransactionID, ev.Timestamp.UnixMilli(), now)
			e.version++
			e.sinceSnapshot++
			n++
		}
		if !page.HasMore || len(page.Events) == 0 {
			return n, nil
		}
	}
}

// applyAppended applies appended events to the entity and fills out.
func (x *Executor) applyAppended(k kind, e *entity, evs []Event, meta codec.Metadata, res sierradb.MultiAppendResult, out *Result) error {
	for i, ev := range evs {
		a := res.Events[i]
		err := k.applyNew(e.state, ev, EventMeta{StreamID: e.streamID, Version: a.StreamVersion, Metadata: meta, Timestamp: a.Timestamp.UnixMilli()})
		if err != nil {
			e.reset()
			return err
		}
		e.tracking.record(meta, res.Events[0].EventID, a.Timestamp.UnixMilli(), x.cfg.Now().UnixMilli())
		e.version = int64(a.StreamVersion)
		e.sinceSnapshot++
		out.Events = append(out.Events, Appended{
			Event: ev, ID: a.EventID, Version: a.StreamVersion,
			PartitionID: res.PartitionID, PartitionSequence: a.PartitionSequence, Timestamp: a.Timestamp,
		})
	}
	out.Version = e.version
	return nil
}
