package embedded

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
)

// maxTransactionBytes bounds one transaction, like SierraDB's default segment
// size: a transaction must fit in one segment.
const maxTransactionBytes = 256 << 20

// event is a stored event. It is never modified once stored, so it may be
// read without a lock after it was taken from a partition under its lock.
type event struct {
	id       uuid.UUID
	key      uuid.UUID
	txID     uuid.UUID
	pid      uint16
	seq      uint64
	version  uint64
	tsNanos  int64
	streamID string
	name     string
	metadata []byte
	payload  []byte
}

func (e *event) timestampMillis() int64 { return e.tsNanos / 1_000_000 }

func (e *event) public() sierradb.Event {
	return sierradb.Event{
		ID:                e.id,
		PartitionKey:      e.key,
		PartitionID:       e.pid,
		TransactionID:     e.txID,
		PartitionSequence: e.seq,
		StreamVersion:     e.version,
		Timestamp:         time.UnixMilli(e.timestampMillis()),
		StreamID:          e.streamID,
		Name:              e.name,
		Metadata:          cloneBytes(e.metadata),
		Payload:           cloneBytes(e.payload),
	}
}

// stream is the index of one stream inside its partition: the partition
// sequence of every version.
type stream struct {
	key  uuid.UUID
	seqs []uint64
}

type partition struct {
	id      uint16
	mu      sync.RWMutex
	events  []*event      // by partition sequence
	size    atomic.Uint64 // len(events), readable without the lock
	streams map[string]*stream
	byID    map[uuid.UUID]*event
	log     *partitionLog // directory mode; nil until the first append
	broken  error         // a failed write; the partition refuses appends
}

// newEvent is a validated event to append.
type newEvent struct {
	streamID string
	name     string
	id       uuid.UUID // uuid.Nil: generate one
	expected sierradb.ExpectedVersion
	tsNanos  uint64
	hasTS    bool
	payload  []byte
	metadata []byte
}

// store holds the events of every partition. Appends lock one partition, so
// appends to different partitions run in parallel; reads take read locks.
type store struct {
	count  uint16
	parts  []*partition
	dir    *dataDir // nil in memory mode
	logger *slog.Logger

	// closeMu is held for reading by every operation that may touch a
	// file, and for writing by close.
	closeMu sync.RWMutex
	closed  bool

	// bindings holds the partition key every stream id is bound to. A
	// stream is bound by its first event. bindMu is taken after a
	// partition lock, never before one, and never held during I/O.
	bindMu   sync.Mutex
	bindings map[string]uuid.UUID

	// sig is closed and replaced after every append: the "changed" signal
	// that subscriptions wait on.
	sigMu sync.Mutex
	sig   chan struct{}

	bytes  atomic.Int64  // stored event bytes, for INFO CACHE
	syncs  atomic.Uint64 // fsyncs of partition logs
	events atomic.Int64  // stored events
}

func newStore(count uint16, logger *slog.Logger) *store {
	st := &store{
		count:    count,
		parts:    make([]*partition, count),
		logger:   logger,
		bindings: make(map[string]uuid.UUID),
		sig:      make(chan struct{}),
	}
	for i := range st.parts {
		st.parts[i] = &partition{
			id:      uint16(i),
			streams: make(map[string]*stream),
			byID:    make(map[uuid.UUID]*event),
		}
	}
	return st
}

// changed returns a channel that is closed by the next append. Take it before
// looking at the store, so that no append can be missed.
func (st *store) changed() <-chan struct{} {
	st.sigMu.Lock()
	defer st.sigMu.Unlock()
	return st.sig
}

func (st *store) notify() {
	st.sigMu.Lock()
	close(st.sig)
	st.sig = make(chan struct{})
	st.sigMu.Unlock()
}

func (st *store) close() error {
	st.closeMu.Lock()
	defer st.closeMu.Unlock()
	if st.closed {
		return nil
	}
	st.closed = true
	if st.dir == nil {
		return nil
	}
	var first error
	for _, p := range st.parts {
		p.mu.Lock()
		if p.log != nil {
			if err := p.log.close(); err != nil && first == nil {
				first = err
			}
			p.log = nil
		}
		p.mu.Unlock()
	}
	if err := st.dir.close(); err != nil && first == nil {
		first = err
	}
	return first
}

// applyLocked adds events to a partition's indexes. p.mu must be held.
func (st *store) applyLocked(p *partition, evs []*event) {
	var n int64
	for _, e := range evs {
		p.events = append(p.events, e)
		s := p.streams[e.streamID]
		if s == nil {
			s = &stream{key: e.key}
			p.streams[e.streamID] = s
		}
		s.seqs = append(s.seqs, e.seq)
		p.byID[e.id] = e
		p.size.Store(uint64(len(p.events)))
		n += int64(len(e.payload) + len(e.metadata) + len(e.name) + len(e.streamID) + 72)
	}
	st.bytes.Add(n)
	st.events.Add(int64(len(evs)))
}

// transactionSize is the size of the log record of a transaction.
func transactionSize(evs []newEvent) int64 {
	n := int64(recordHeaderSize + txHeaderSize)
	for _, e := range evs {
		n += int64(eventFixedSize + len(e.streamID) + len(e.name) + len(e.metadata) + len(e.payload))
	}
	return n
}

// appendResult describes a stored transaction.
type appendResult struct {
	key    uuid.UUID
	pid    uint16
	events []*event
}

// append stores events atomically in the partition of key. Every check is
// made before anything is written: stream ids, event ids (a missing hash
// fails with idHashErr), timestamps, names, size, expected versions (each
// against the state left by the earlier events of the same request) and the
// stream's partition key binding. Strict versioning is the caller's check.
func (st *store) append(key uuid.UUID, evs []newEvent, now time.Time, idHashErr string) (*appendResult, error) {
	if len(evs) == 0 {
		return nil, cmdError(msgNoEvents)
	}
	keyHash := sierradb.PartitionHash(key)
	for i := range evs {
		e := &evs[i]
		if err := checkStreamID(e.streamID); err != nil {
			return nil, err
		}
		if e.id != uuid.Nil && sierradb.PartitionHash(e.id) != keyHash {
			return nil, cmdError(idHashErr)
		}
	}
	nowNanos := now.UnixNano()
	if now.Before(time.Unix(0, 0)) {
		return nil, cmdError(msgSystemTime)
	}
	for i := range evs {
		e := &evs[i]
		if e.hasTS && e.tsNanos >= 1<<63 {
			return nil, cmdError(msgSystemTime)
		}
		if len(e.name) > sierradb.MaxEventNameLen {
			return nil, cmdError(msgEventNameTooLong)
		}
	}
	if transactionSize(evs) > maxTransactionBytes {
		return nil, cmdError(msgSegmentExceeded)
	}

	st.closeMu.RLock()
	defer st.closeMu.RUnlock()
	if st.closed {
		return nil, ErrClosed
	}
	pid := sierradb.PartitionID(key, st.count)
	p := st.parts[pid]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.broken != nil {
		return nil, p.broken
	}

	// The partition key binding is checked before the expected versions,
	// as SierraDB does. It is made (and checked again) below, once the
	// versions pass.
	st.bindMu.Lock()
	for _, e := range evs {
		if bound, ok := st.bindings[e.streamID]; ok && bound != key {
			st.bindMu.Unlock()
			return nil, errorf(msgPartitionKeyMismatch, bound, key)
		}
	}
	st.bindMu.Unlock()

	// Expected versions, against the state left by earlier events.
	current := make(map[string]int64, len(evs))
	for _, e := range evs {
		if _, ok := current[e.streamID]; ok {
			continue
		}
		current[e.streamID] = -1
		if s := p.streams[e.streamID]; s != nil && s.key == key {
			current[e.streamID] = int64(len(s.seqs)) - 1
		}
	}
	txID := uuid.New()
	if len(evs) == 1 {
		txID[8] |= 0x80
	} else {
		txID[8] &^= 0x80
	}
	firstSeq := uint64(len(p.events))
	built := make([]*event, len(evs))
	for i, e := range evs {
		cur := current[e.streamID]
		if !e.expected.Matches(cur) {
			return nil, &wrongVersionError{key: key, streamID: e.streamID, current: cur, expected: e.expected}
		}
		current[e.streamID] = cur + 1
		id := e.id
		if id == uuid.Nil {
			id = sierradb.NewEventIDAt(key, now)
		}
		ts := nowNanos
		if e.hasTS {
			ts = int64(e.tsNanos)
		}
		built[i] = &event{
			id: id, key: key, txID: txID, pid: pid,
			seq: firstSeq + uint64(i), version: uint64(cur + 1), tsNanos: ts,
			streamID: e.streamID, name: e.name, metadata: e.metadata, payload: e.payload,
		}
	}

	// Partition key binding. A new binding is made before the write and
	// undone if the write fails. Nobody can rely on it meanwhile: another
	// writer of the stream with the same key is in this partition, whose
	// lock is held, and one with another key is refused either way.
	st.bindMu.Lock()
	var added []string
	for _, e := range evs {
		bound, ok := st.bindings[e.streamID]
		if !ok {
			st.bindings[e.streamID] = key
			added = append(added, e.streamID)
			continue
		}
		if bound != key {
			for _, sid := range added {
				delete(st.bindings, sid)
			}
			st.bindMu.Unlock()
			return nil, errorf(msgPartitionKeyMismatch, bound, key)
		}
	}
	st.bindMu.Unlock()
	if err := st.persistLocked(p, built); err != nil {
		st.bindMu.Lock()
		for _, sid := range added {
			delete(st.bindings, sid)
		}
		st.bindMu.Unlock()
		return nil, err
	}
	st.applyLocked(p, built)
	st.notify()
	return &appendResult{key: key, pid: pid, events: built}, nil
}

// persistLocked writes a transaction to the partition's log and syncs it. It
// does nothing in memory mode. p.mu must be held.
func (st *store) persistLocked(p *partition, evs []*event) error {
	if st.dir == nil {
		return nil
	}
	if p.log == nil {
		l, err := st.dir.createLog(p.id)
		if err != nil {
			return errorf(msgDBOpFailed+"%v", err)
		}
		p.log = l
	}
	if err := p.log.append(encodeTransaction(evs)); err != nil {
		p.broken = errorf(msgDBOpFailed+"%v", err)
		st.logger.Error("partition log write failed; the partition refuses further appends",
			"partition", p.id, "err", err)
		return p.broken
	}
	st.syncs.Add(1)
	return nil
}

// streamSnapshot returns the events of versions [start, end] (end inclusive,
// clipped to the stream) of the stream (key, streamID), at most limit of
// them, plus the stream's latest version (-1 when empty).
func (st *store) streamRange(key uuid.UUID, streamID string, start uint64, end *uint64, limit uint64) ([]*event, int64) {
	p := st.parts[sierradb.PartitionID(key, st.count)]
	p.mu.RLock()
	defer p.mu.RUnlock()
	s := p.streams[streamID]
	if s == nil || s.key != key {
		return nil, -1
	}
	latest := uint64(len(s.seqs) - 1)
	hi := latest
	if end != nil && *end < hi {
		hi = *end
	}
	var out []*event
	for v := start; v <= hi && uint64(len(out)) < limit; v++ {
		out = append(out, p.events[s.seqs[v]])
		if v == ^uint64(0) {
			break
		}
	}
	return out, int64(latest)
}

// streamLatest returns the latest version of (key, streamID), or -1.
func (st *store) streamLatest(key uuid.UUID, streamID string) int64 {
	p := st.parts[sierradb.PartitionID(key, st.count)]
	p.mu.RLock()
	defer p.mu.RUnlock()
	s := p.streams[streamID]
	if s == nil || s.key != key {
		return -1
	}
	return int64(len(s.seqs)) - 1
}

// partitionRange returns the events of sequences [start, end] of a
// partition, at most limit of them, and its latest sequence (-1 when empty).
func (st *store) partitionRange(pid uint16, start uint64, end *uint64, limit uint64) ([]*event, int64) {
	p := st.parts[pid]
	p.mu.RLock()
	defer p.mu.RUnlock()
	if len(p.events) == 0 {
		return nil, -1
	}
	latest := uint64(len(p.events) - 1)
	hi := latest
	if end != nil && *end < hi {
		hi = *end
	}
	var out []*event
	for s := start; s <= hi && uint64(len(out)) < limit; s++ {
		out = append(out, p.events[s])
		if s == ^uint64(0) {
			break
		}
	}
	return out, int64(latest)
}

// partitionLatest returns the latest sequence of a partition, or -1.
func (st *store) partitionLatest(pid uint16) int64 {
	p := st.parts[pid]
	p.mu.RLock()
	defer p.mu.RUnlock()
	return int64(len(p.events)) - 1
}

// eventByID finds an event in the partition its id's hash maps to. With
// duplicate ids the most recently stored event wins.
func (st *store) eventByID(id uuid.UUID) *event {
	p := st.parts[sierradb.PartitionID(id, st.count)]
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.byID[id]
}

// fetchPartition returns up to max events of partition pid from sequence
// from on.
func (st *store) fetchPartition(pid uint16, from uint64, max int, out []*event) []*event {
	p := st.parts[pid]
	if from >= p.size.Load() {
		return out // nothing new; skip the lock
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	for s := from; s < uint64(len(p.events)) && max > 0; s++ {
		out = append(out, p.events[s])
		max--
	}
	return out
}

// fetchStream returns up to max events of (key, streamID) from version from
// on.
func (st *store) fetchStream(key uuid.UUID, streamID string, from uint64, max int, out []*event) []*event {
	p := st.parts[sierradb.PartitionID(key, st.count)]
	p.mu.RLock()
	defer p.mu.RUnlock()
	s := p.streams[streamID]
	if s == nil || s.key != key {
		return out
	}
	for v := from; v < uint64(len(s.seqs)) && max > 0; v++ {
		out = append(out, p.events[s.seqs[v]])
		max--
	}
	return out
}
