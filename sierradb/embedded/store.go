package embedded

import (
	"hash/maphash"
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

// event is a stored event. It is not modified once made, so it may be read
// without a lock. In memory mode the partitions hold the events; in
// directory mode events are decoded from the logs for each read.
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

type partition struct {
	id     uint16
	mu     sync.RWMutex
	size   atomic.Uint64 // events stored; readable without the lock
	events []*event      // memory mode: the events, by partition sequence
	offs   chunkedU64    // directory mode: the record offset of each event
	ids    idTable       // event id hash -> partition sequence
	log    *partitionLog // directory mode; nil until the first append
	broken error         // a failed write; the partition refuses appends
}

// newEvent is a validated event to append.
type newEvent struct {
	streamID string
	name     string
	id       uuid.UUID
	hasID    bool // id was given (it may be the nil UUID); otherwise one is generated
	expected sierradb.ExpectedVersion
	tsMillis uint64 // TIMESTAMP as given
	tsNanos  uint64 // TIMESTAMP in nanoseconds, once checked
	hasTS    bool
	payload  []byte
	metadata []byte
}

// store holds the events of every partition. Appends lock one partition, so
// appends to different partitions run in parallel (tested:
// TestAppendsToPartitionsRunInParallel); reads take read locks and
// read the logs without holding them.
//
// Lock order: closeMu, then a partition's mu, then streamsMu; no lock but
// closeMu is held during I/O.
type store struct {
	count  uint16
	parts  []*partition
	dir    *dataDir    // nil in memory mode
	cache  *blockCache // directory mode
	seed   maphash.Seed
	logger *slog.Logger

	// closeMu is held for reading by every operation that may touch a
	// file, and for writing by close.
	closeMu sync.RWMutex
	closed  bool

	// streams holds every stream by id. A stream is bound to the partition
	// key of its first event: a stream id has one key in the whole store.
	streamsMu sync.RWMutex
	streams   map[string]*stream

	// sig is closed and replaced after every append: the "changed" signal
	// that subscriptions wait on.
	sigMu sync.Mutex
	sig   chan struct{}

	bytes  atomic.Int64  // stored event bytes, for INFO CACHE in memory mode
	syncs  atomic.Uint64 // fsyncs of partition logs
	events atomic.Int64  // stored events

	// syncFault, when set, runs before each fsync of a partition log
	// record and replaces the fsync when it returns an error: the seam
	// through which tests make an fsync fail (export_test.go). Only tests
	// set it.
	syncFault atomic.Pointer[func(partition uint16) error]
}

func newStore(count uint16, logger *slog.Logger) *store {
	st := &store{
		count:   count,
		parts:   make([]*partition, count),
		seed:    maphash.MakeSeed(),
		logger:  logger,
		streams: make(map[string]*stream),
		sig:     make(chan struct{}),
	}
	for i := range st.parts {
		st.parts[i] = &partition{id: uint16(i)}
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

// lookupStream returns the stream (key, id), or nil if the stream is empty
// or bound to another key.
func (st *store) lookupStream(key uuid.UUID, id string) *stream {
	st.streamsMu.RLock()
	s := st.streams[id]
	st.streamsMu.RUnlock()
	if s == nil || s.key != key {
		return nil
	}
	return s
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

// checkNewEvents makes the checks of an append that need no state: stream
// ids, event ids (a missing hash fails with idHashErr), timestamps, names
// and size.
func checkNewEvents(key uuid.UUID, evs []newEvent, now time.Time, idHashErr string) error {
	if len(evs) == 0 {
		return cmdError(msgNoEvents)
	}
	keyHash := sierradb.PartitionHash(key)
	for i := range evs {
		e := &evs[i]
		if err := checkStreamID(e.streamID); err != nil {
			return err
		}
		if e.hasID && sierradb.PartitionHash(e.id) != keyHash {
			return cmdError(idHashErr)
		}
	}
	if now.Before(time.Unix(0, 0)) {
		return cmdError(msgSystemTime)
	}
	for i := range evs {
		e := &evs[i]
		if e.hasTS && e.tsNanos >= 1<<63 {
			return cmdError(msgSystemTime)
		}
		if len(e.name) > sierradb.MaxEventNameLen {
			return cmdError(msgEventNameTooLong)
		}
	}
	if transactionSize(evs) > maxTransactionBytes {
		return cmdError(msgSegmentExceeded)
	}
	return nil
}

// append stores events atomically in the partition of key. Every check is
// made before anything is written: those of checkNewEvents, expected
// versions (each against the state left by the earlier events of the same
// request) and the stream's partition key binding. Strict versioning is the
// caller's check.
func (st *store) append(key uuid.UUID, evs []newEvent, now time.Time, idHashErr string) (*appendResult, error) {
	if err := checkNewEvents(key, evs, now, idHashErr); err != nil {
		return nil, err
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
	firstSeq := p.size.Load()
	if firstSeq+uint64(len(evs)) > maxPartitionEvents {
		return nil, errorf(msgPartitionFull, pid, uint64(maxPartitionEvents))
	}

	// The partition key binding is checked before the expected versions,
	// as SierraDB does. The streams of this partition cannot change
	// meanwhile: p.mu is held.
	streams := make(map[string]*stream, len(evs))
	st.streamsMu.RLock()
	for _, e := range evs {
		s := st.streams[e.streamID]
		if s != nil && s.key != key {
			st.streamsMu.RUnlock()
			return nil, errorf(msgPartitionKeyMismatch, s.key, key)
		}
		streams[e.streamID] = s
	}
	st.streamsMu.RUnlock()

	// Expected versions, against the state left by earlier events.
	current := make(map[string]int64, len(streams))
	for sid, s := range streams {
		current[sid] = -1
		if s != nil {
			current[sid] = s.latest()
		}
	}
	txID := uuid.New()
	if len(evs) == 1 {
		txID[8] |= 0x80
	} else {
		txID[8] &^= 0x80
	}
	nowNanos := now.UnixNano()
	built := make([]*event, len(evs))
	for i, e := range evs {
		cur := current[e.streamID]
		if !e.expected.Matches(cur) {
			return nil, &wrongVersionError{key: key, streamID: e.streamID, current: cur, expected: e.expected}
		}
		current[e.streamID] = cur + 1
		id := e.id
		if !e.hasID {
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

	// New streams are bound before the write and unbound if it fails.
	// Nobody can rely on them meanwhile: another writer with the same key
	// is in this partition, whose lock is held, and one with another key
	// is refused either way.
	added, err := st.bindNew(key, pid, streams)
	if err != nil {
		return nil, err
	}
	off, err := st.persistLocked(p, built)
	if err != nil {
		st.unbind(added)
		return nil, err
	}
	st.applyLocked(p, built, streams, off)
	st.notify()
	return &appendResult{key: key, pid: pid, events: built}, nil
}

// bindNew creates the streams of the map that do not exist yet, bound to
// key, and returns their ids.
func (st *store) bindNew(key uuid.UUID, pid uint16, streams map[string]*stream) ([]string, error) {
	st.streamsMu.Lock()
	defer st.streamsMu.Unlock()
	var added []string
	for sid, s := range streams {
		if s != nil {
			continue
		}
		if other := st.streams[sid]; other != nil {
			// Bound meanwhile by a writer in another partition.
			for _, a := range added {
				delete(st.streams, a)
			}
			return nil, errorf(msgPartitionKeyMismatch, other.key, key)
		}
		s = &stream{id: sid, key: key, pid: pid}
		st.streams[sid] = s
		streams[sid] = s
		added = append(added, sid)
	}
	return added, nil
}

func (st *store) unbind(ids []string) {
	st.streamsMu.Lock()
	for _, id := range ids {
		delete(st.streams, id)
	}
	st.streamsMu.Unlock()
}

// persistLocked writes a transaction to the partition's log and syncs it,
// returning the record's offset. It does nothing in memory mode. p.mu must
// be held.
func (st *store) persistLocked(p *partition, evs []*event) (uint64, error) {
	if st.dir == nil {
		return 0, nil
	}
	if p.log == nil {
		l, err := st.dir.createLog(p.id)
		if err != nil {
			return 0, errorf(msgDBOpFailed+"%v", err)
		}
		p.log = l
	}
	var fault func() error
	if f := st.syncFault.Load(); f != nil {
		fault = func() error { return (*f)(p.id) }
	}
	off, err := p.log.append(evs[0].seq, len(evs), encodeBody(evs), fault)
	if err != nil {
		p.broken = errorf(msgDBOpFailed+"%v", err)
		st.logger.Error("partition log write failed; the partition refuses further appends",
			"partition", p.id, "err", err)
		return 0, p.broken
	}
	st.syncs.Add(1)
	return off, nil
}

// applyLocked adds a stored transaction to the partition's indexes (and, in
// memory mode, keeps its events). p.mu must be held.
func (st *store) applyLocked(p *partition, evs []*event, streams map[string]*stream, off uint64) {
	var n int64
	for _, e := range evs {
		s := streams[e.streamID]
		s.seqs = append(s.seqs, uint32(e.seq))
		p.ids.insert(idHash(st.seed, e.id), uint32(e.seq))
		if st.dir == nil {
			p.events = append(p.events, e)
		} else {
			p.offs.append(off)
		}
		n += int64(len(e.payload) + len(e.metadata) + len(e.name) + len(e.streamID) + 72)
	}
	p.size.Add(uint64(len(evs)))
	st.bytes.Add(n)
	st.events.Add(int64(len(evs)))
}
