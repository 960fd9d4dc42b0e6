package embedded

import (
	"fmt"
	"slices"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
)

// located is an event to read in directory mode: its sequence and the
// offset of its record.
type located struct {
	seq, off uint64
}

// snapshot is what a read takes from a partition under its lock: the events
// themselves in memory mode, or where they are in directory mode.
type snapshot struct {
	mem    bool // memory mode
	events []*event
	locs   []located
	log    *partitionLog
	limit  uint64 // acknowledged size of the log
}

// takeLocked notes the event at seq. p.mu must be held.
func (sn *snapshot) takeLocked(p *partition, seq uint64) {
	if sn.mem {
		sn.events = append(sn.events, p.events[seq])
		return
	}
	sn.log, sn.limit = p.log, p.log.size // not nil: the partition has events
	sn.locs = append(sn.locs, located{seq, p.offs.at(seq)})
}

// load returns the events of the snapshot, in order, appended to out.
// st.closeMu must be held for reading.
func (st *store) load(p *partition, sn *snapshot, out []*event) ([]*event, error) {
	if len(sn.locs) == 0 {
		return append(out, sn.events...), nil
	}
	locs := sn.locs
	for i := 0; i < len(locs); {
		j := i + 1
		for j < len(locs) && locs[j].off == locs[i].off && locs[j].seq == locs[j-1].seq+1 {
			j++
		}
		h, body, err := st.readRecord(p.id, sn.log, locs[i].off, sn.limit)
		if err != nil {
			return out, err
		}
		lo := int(locs[i].seq - h.firstSeq)
		if locs[i].seq < h.firstSeq || lo+(j-i) > int(h.count) {
			return out, st.readFailed(sn.log, locs[i].off, fmt.Sprintf("record does not hold sequence %d", locs[i].seq))
		}
		if out, err = decodeEvents(body, h, p.id, lo, lo+(j-i), out); err != nil {
			return out, st.readFailed(sn.log, locs[i].off, "record cannot be decoded: "+err.Error())
		}
		i = j
	}
	return out, nil
}

// readRecord reads and checks the record at off through the cache.
func (st *store) readRecord(pid uint16, l *partitionLog, off, limit uint64) (recordHeader, []byte, error) {
	hb, err := st.cache.read(pid, l.f, off, recordHeaderSize, limit)
	if err != nil {
		return recordHeader{}, nil, st.readFailed(l, off, err.Error())
	}
	h, ok := parseRecordHeader(hb, l.salt, off)
	if !ok {
		return recordHeader{}, nil, st.readFailed(l, off, "record header checksum mismatch")
	}
	body, err := st.cache.read(pid, l.f, off+recordHeaderSize, uint64(h.bodyLen), limit)
	if err != nil {
		return recordHeader{}, nil, st.readFailed(l, off, err.Error())
	}
	if !h.bodyOK(body) {
		return recordHeader{}, nil, st.readFailed(l, off, "record checksum mismatch")
	}
	return h, body, nil
}

// readFailed logs a log that cannot be read back and returns the error a
// command replies with.
func (st *store) readFailed(l *partitionLog, off uint64, reason string) error {
	err := &CorruptLogError{Path: l.path, Offset: int64(off), Reason: reason}
	st.logger.Error("reading a partition log failed", "err", err)
	return errorf(msgDBOpFailed+"%v", err)
}

// streamRange returns the events of versions [start, end] (end inclusive,
// clipped to the stream) of the stream (key, streamID), at most limit of
// them, plus the stream's latest version (-1 when empty).
func (st *store) streamRange(key uuid.UUID, streamID string, start uint64, end *uint64, limit uint64) ([]*event, int64, error) {
	s := st.lookupStream(key, streamID)
	if s == nil {
		return nil, -1, nil
	}
	p := st.parts[s.pid]
	st.closeMu.RLock()
	defer st.closeMu.RUnlock()
	if st.closed && st.dir != nil {
		return nil, -1, ErrClosed
	}
	sn := snapshot{mem: st.dir == nil}
	p.mu.RLock()
	latest := s.latest()
	if latest >= 0 {
		hi := uint64(latest)
		if end != nil && *end < hi {
			hi = *end
		}
		for v, n := start, uint64(0); v <= hi && n < limit; v, n = v+1, n+1 {
			sn.takeLocked(p, uint64(s.seqs[v]))
			if v == ^uint64(0) {
				break
			}
		}
	}
	p.mu.RUnlock()
	evs, err := st.load(p, &sn, nil)
	return evs, latest, err
}

// streamLatest returns the latest version of (key, streamID), or -1.
func (st *store) streamLatest(key uuid.UUID, streamID string) int64 {
	s := st.lookupStream(key, streamID)
	if s == nil {
		return -1
	}
	p := st.parts[s.pid]
	p.mu.RLock()
	defer p.mu.RUnlock()
	return s.latest()
}

// partitionRange returns the events of sequences [start, end] of a
// partition, at most limit of them, and its latest sequence (-1 when empty).
func (st *store) partitionRange(pid uint16, start uint64, end *uint64, limit uint64) ([]*event, int64, error) {
	p := st.parts[pid]
	st.closeMu.RLock()
	defer st.closeMu.RUnlock()
	if st.closed && st.dir != nil {
		return nil, -1, ErrClosed
	}
	sn := snapshot{mem: st.dir == nil}
	p.mu.RLock()
	latest := int64(p.size.Load()) - 1
	if latest >= 0 {
		hi := uint64(latest)
		if end != nil && *end < hi {
			hi = *end
		}
		for s, n := start, uint64(0); s <= hi && n < limit; s, n = s+1, n+1 {
			sn.takeLocked(p, s)
			if s == ^uint64(0) {
				break
			}
		}
	}
	p.mu.RUnlock()
	evs, err := st.load(p, &sn, nil)
	return evs, latest, err
}

// partitionLatest returns the latest sequence of a partition, or -1.
func (st *store) partitionLatest(pid uint16) int64 {
	return int64(st.parts[pid].size.Load()) - 1
}

// eventByID finds an event in the partition its id's hash maps to. With
// duplicate ids the most recently stored event wins.
func (st *store) eventByID(id uuid.UUID) (*event, error) {
	p := st.parts[sierradb.PartitionID(id, st.count)]
	st.closeMu.RLock()
	defer st.closeMu.RUnlock()
	if st.closed && st.dir != nil {
		return nil, ErrClosed
	}
	p.mu.RLock()
	cands := p.ids.candidates(idHash(st.seed, id), nil)
	slices.Sort(cands)
	sn := snapshot{mem: st.dir == nil}
	for i := len(cands) - 1; i >= 0; i-- {
		sn.takeLocked(p, uint64(cands[i]))
	}
	p.mu.RUnlock()
	// Candidates share a hash; the newest one with this id wins.
	for i := range sn.events {
		if sn.events[i].id == id {
			return sn.events[i], nil
		}
	}
	for _, loc := range sn.locs {
		one := snapshot{mem: false, locs: []located{loc}, log: sn.log, limit: sn.limit}
		evs, err := st.load(p, &one, nil)
		if err != nil {
			return nil, err
		}
		if evs[0].id == id {
			return evs[0], nil
		}
	}
	return nil, nil
}

// fetchPartition returns up to max events of partition pid from sequence
// from on.
func (st *store) fetchPartition(pid uint16, from uint64, max int, out []*event) ([]*event, error) {
	p := st.parts[pid]
	if from >= p.size.Load() {
		return out, nil // nothing new; skip the locks
	}
	st.closeMu.RLock()
	defer st.closeMu.RUnlock()
	if st.closed && st.dir != nil {
		return out, ErrClosed
	}
	sn := snapshot{mem: st.dir == nil}
	p.mu.RLock()
	for s := from; s < p.size.Load() && max > 0; s++ {
		sn.takeLocked(p, s)
		max--
	}
	p.mu.RUnlock()
	return st.load(p, &sn, out)
}

// fetchStream returns up to max events of (key, streamID) from version from
// on.
func (st *store) fetchStream(key uuid.UUID, streamID string, from uint64, max int, out []*event) ([]*event, error) {
	s := st.lookupStream(key, streamID)
	if s == nil {
		return out, nil
	}
	p := st.parts[s.pid]
	st.closeMu.RLock()
	defer st.closeMu.RUnlock()
	if st.closed && st.dir != nil {
		return out, ErrClosed
	}
	sn := snapshot{mem: st.dir == nil}
	p.mu.RLock()
	for v := from; v < uint64(len(s.seqs)) && max > 0; v++ {
		sn.takeLocked(p, uint64(s.seqs[v]))
		max--
	}
	p.mu.RUnlock()
	return st.load(p, &sn, out)
}
