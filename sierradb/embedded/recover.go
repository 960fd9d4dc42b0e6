package embedded

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
)

// damage is where and why the scan of a log stopped early.
type damage struct {
	offset uint64
	reason string
	torn   bool // a write cut short by a crash: not acknowledged
	index  bool // the record was (partly) added to the index
}

// scanLog reads the first size bytes of a partition log, checks every
// record and hands each one to visit, in order. It stops at the first
// problem and reports it:
//
//   - torn: an incomplete file or record header at the end of the file, a
//     record whose header is intact but which is shorter than its header
//     says (it reaches past the end of the file), or nothing but zeros from
//     a record's start to the end of the file. That is what a crash during
//     the (unacknowledged) last write leaves.
//   - otherwise corrupt: a header that fails its checksum followed by
//     anything but zeros, a full-length record that fails its checksum
//     (anywhere, also last), a record that does not decode, a sequence gap,
//     or an error from visit.
//
// It never searches for records past a problem (tested:
// TestFaultRecordImageTornWrite).
func scanLog(f *os.File, size uint64, pid uint16, visit func(off uint64, h recordHeader, body []byte) error) (salt, valid uint64, dmg *damage, err error) {
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, int64(size)), 1<<20)
	readErr := func(err error) error { return fmt.Errorf("embedded: read %s: %w", f.Name(), err) }
	if size < fileHeaderSize {
		return 0, 0, &damage{reason: "incomplete file header", torn: true}, nil
	}
	fh := make([]byte, fileHeaderSize)
	if _, err := io.ReadFull(br, fh); err != nil {
		return 0, 0, nil, readErr(err)
	}
	salt, perr := parseFileHeader(fh, pid)
	if perr != nil {
		zeros, err := allZero(fh, br)
		if err != nil {
			return 0, 0, nil, readErr(err)
		}
		if zeros {
			return 0, 0, &damage{reason: "file header never written", torn: true}, nil
		}
		return 0, 0, &damage{reason: perr.Error()}, nil
	}
	off := uint64(fileHeaderSize)
	var hb [recordHeaderSize]byte
	var body []byte
	var nextSeq uint64
	for off < size {
		if size-off < recordHeaderSize {
			return salt, off, &damage{offset: off, reason: "incomplete record header", torn: true}, nil
		}
		if _, err := io.ReadFull(br, hb[:]); err != nil {
			return 0, 0, nil, readErr(err)
		}
		h, ok := parseRecordHeader(hb[:], salt, off)
		if !ok {
			zeros, err := allZero(hb[:], br)
			if err != nil {
				return 0, 0, nil, readErr(err)
			}
			if zeros {
				return salt, off, &damage{offset: off, reason: "zeros after the last record", torn: true}, nil
			}
			return salt, off, &damage{offset: off, reason: "record header checksum mismatch"}, nil
		}
		if h.size() > size-off {
			return salt, off, &damage{offset: off, torn: true,
				reason: fmt.Sprintf("record of %d bytes cut short at %d bytes", h.size(), size-off)}, nil
		}
		if cap(body) < int(h.bodyLen) {
			body = make([]byte, h.bodyLen)
		}
		body = body[:h.bodyLen]
		if _, err := io.ReadFull(br, body); err != nil {
			return 0, 0, nil, readErr(err)
		}
		switch {
		case !h.bodyOK(body):
			return salt, off, &damage{offset: off, reason: "record checksum mismatch"}, nil
		case h.firstSeq != nextSeq:
			return salt, off, &damage{offset: off, reason: fmt.Sprintf("record starts at sequence %d, expected %d", h.firstSeq, nextSeq)}, nil
		case h.count == 0 || uint64(h.count)*eventFixedSize > uint64(h.bodyLen) || h.firstSeq+uint64(h.count) > maxPartitionEvents:
			return salt, off, &damage{offset: off, reason: fmt.Sprintf("invalid event count %d", h.count)}, nil
		}
		if err := visit(off, h, body); err != nil {
			return salt, off, &damage{offset: off, reason: err.Error(), index: true}, nil
		}
		nextSeq += uint64(h.count)
		off += h.size()
	}
	return salt, off, nil, nil
}

// allZero reports whether b and everything left in r are zero bytes.
func allZero(b []byte, r *bufio.Reader) (bool, error) {
	if bytes.ContainsFunc(b, func(r rune) bool { return r != 0 }) {
		return false, nil
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		for _, c := range buf[:n] {
			if c != 0 {
				return false, nil
			}
		}
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// indexRecord adds a checked record of partition p to the index while the
// store loads. local holds the partition's streams.
func (st *store) indexRecord(p *partition, local map[string]*stream, off uint64, h recordHeader, body []byte) error {
	_, err := walkBody(body, h.count, func(i int, key uuid.UUID, e *eventHead) error {
		if sierradb.PartitionID(key, st.count) != p.id {
			return fmt.Errorf("partition key %s does not belong to partition %d", key, p.id)
		}
		if len(e.streamID) == 0 || bytes.IndexByte(e.streamID, 0) >= 0 {
			return fmt.Errorf("invalid stream id %q", e.streamID)
		}
		s := local[string(e.streamID)]
		if s == nil {
			s = &stream{id: string(e.streamID), key: key, pid: p.id, firstOff: off}
			local[s.id] = s
		} else if s.key != key {
			return fmt.Errorf("stream %q was written with partition key %s, this record has %s", s.id, s.key, key)
		}
		if e.version != uint64(len(s.seqs)) {
			return fmt.Errorf("event %d of stream %q has version %d, expected %d", i, s.id, e.version, len(s.seqs))
		}
		seq := h.firstSeq + uint64(i)
		s.seqs = append(s.seqs, uint32(seq))
		p.offs.append(off)
		p.ids.insert(idHash(st.seed, e.id), uint32(seq))
		st.bytes.Add(int64(len(e.payload) + len(e.metadata) + len(e.name) + len(e.streamID) + 72))
		return nil
	})
	if err != nil {
		return err
	}
	p.size.Add(uint64(h.count))
	st.events.Add(int64(h.count))
	return nil
}

// resetLoading empties a partition's index while the store loads.
func (st *store) resetLoading(p *partition) {
	st.events.Add(-int64(p.size.Load()))
	p.size.Store(0)
	p.offs = chunkedU64{}
	p.ids = idTable{}
}

// openPartition opens and indexes the log of partition pid. A torn tail is
// cut off; damage fails with a *CorruptLogError, or is cut off and saved
// with salvage.
func (st *store) openPartition(pid uint16, salvage bool) (*partitionLog, map[string]*stream, *RecoveryAction, error) {
	d := st.dir
	path := d.logPath(pid)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("embedded: open %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, nil, fmt.Errorf("embedded: stat %s: %w", path, err)
	}
	size := uint64(fi.Size())
	p := st.parts[pid]
	local := make(map[string]*stream)
	visit := func(off uint64, h recordHeader, body []byte) error { return st.indexRecord(p, local, off, h, body) }
	salt, valid, dmg, err := scanLog(f, size, pid, visit)
	if err != nil {
		f.Close()
		return nil, nil, nil, err
	}
	if dmg == nil {
		return &partitionLog{path: path, f: f, salt: salt, size: size}, local, nil, nil
	}
	if !dmg.torn && !salvage {
		f.Close()
		return nil, nil, nil, &CorruptLogError{Path: path, Offset: int64(dmg.offset), Reason: dmg.reason}
	}
	if dmg.index {
		// The damaged record was partly indexed: index again up to it.
		st.resetLoading(p)
		clear(local)
		if _, _, d2, err := scanLog(f, dmg.offset, pid, visit); err != nil || d2 != nil {
			f.Close()
			return nil, nil, nil, errors.Join(err, fmt.Errorf("embedded: %s changed while it was opened", path))
		}
	}
	act := &RecoveryAction{Kind: TornTail, Path: path, Offset: int64(valid), Bytes: int64(size - valid), Reason: dmg.reason}
	act.Records, act.Events, act.Complete = countRecords(f, salt, valid, size)
	if dmg.torn {
		// At most one record, not acknowledged; counted if its header
		// could be read.
		act.Complete = true
	}
	if !dmg.torn {
		act.Kind = Salvaged
		if act.SavedTo, err = saveTail(f, path, valid, size); err != nil {
			f.Close()
			return nil, nil, nil, err
		}
	}
	if salt, err = cutLog(f, pid, salt, valid); err != nil {
		f.Close()
		return nil, nil, nil, fmt.Errorf("embedded: cut %s at offset %d: %w", path, valid, err)
	}
	return &partitionLog{path: path, f: f, salt: salt, size: max(valid, fileHeaderSize)}, local, act, nil
}

// countRecords walks the record headers from off to size, as far as they
// are intact, and counts records and events. complete reports whether the
// walk reached size.
func countRecords(f *os.File, salt, off, size uint64) (records, events int, complete bool) {
	if off < fileHeaderSize {
		return 0, 0, size == off
	}
	var hb [recordHeaderSize]byte
	for off < size {
		if size-off < recordHeaderSize {
			return records, events, false
		}
		if _, err := f.ReadAt(hb[:], int64(off)); err != nil {
			return records, events, false
		}
		h, ok := parseRecordHeader(hb[:], salt, off)
		if !ok {
			return records, events, false
		}
		records++
		events += int(h.count)
		if h.size() > size-off {
			return records, events, true
		}
		off += h.size()
	}
	return records, events, true
}

// saveTail copies the bytes [from, size) of a log to a new file next to it
// and returns that file's name.
func saveTail(f *os.File, path string, from, size uint64) (string, error) {
	name := fmt.Sprintf("%s.damaged-%d", path, from)
	for i := 1; ; i++ {
		if _, err := os.Stat(name); errors.Is(err, os.ErrNotExist) {
			break
		}
		name = fmt.Sprintf("%s.damaged-%d.%d", path, from, i)
	}
	out, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", fmt.Errorf("embedded: save the damaged part of %s: %w", path, err)
	}
	_, err = io.Copy(out, io.NewSectionReader(f, int64(from), int64(size-from)))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		return "", fmt.Errorf("embedded: save the damaged part of %s to %s: %w", path, name, err)
	}
	return name, nil
}

// cutLog truncates a log at off, writing a fresh file header (with a new
// salt) when off is inside the old one, and syncs it.
func cutLog(f *os.File, pid uint16, salt, off uint64) (uint64, error) {
	if off < fileHeaderSize {
		salt = newSalt()
		if err := f.Truncate(0); err != nil {
			return 0, err
		}
		if _, err := f.WriteAt(fileHeader(pid, salt), 0); err != nil {
			return 0, err
		}
		off = fileHeaderSize
	}
	if err := f.Truncate(int64(off)); err != nil {
		return 0, err
	}
	return salt, f.Sync()
}
