package embedded

// Directory format
//
//	<dir>/meta.json               {"format":"sierradb-embedded","version":1,"partition_count":N}
//	<dir>/LOCK                    held with flock(2) while a server uses the directory
//	<dir>/partition-NNNNN.log     one append-only log per partition, created on its first append
//
// A partition log starts with a 16-byte header: the magic "SDBEMLOG", a
// big-endian uint16 format version, the uint16 partition id and 4 reserved
// bytes. Records follow, one per transaction (EAPPEND or EMAPPEND):
//
//	uint32 body length | uint32 CRC-32C (Castagnoli) of the body | body
//
// The body, all integers big-endian:
//
//	[16]byte transaction id | [16]byte partition key | uint64 first partition sequence | uint32 event count
//	per event: [16]byte event id | uint64 stream version | uint64 timestamp (ns)
//	           uint8 len + stream id | uint8 len + event name
//	           uint32 len + metadata | uint32 len + payload
//
// A record is written with one write and fsynced before the append is
// acknowledged.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
)

const (
	logMagic         = "SDBEMLOG"
	logFormat        = 1
	logHeaderSize    = 16
	recordHeaderSize = 8
	txHeaderSize     = 16 + 16 + 8 + 4
	eventFixedSize   = 16 + 8 + 8 + 1 + 1 + 4 + 4
	metaFormat       = "sierradb-embedded"
	metaVersion      = 1
	metaFile         = "meta.json"
	lockFile         = "LOCK"
	logPrefix        = "partition-"
	logSuffix        = ".log"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type dirMeta struct {
	Format         string `json:"format"`
	Version        int    `json:"version"`
	PartitionCount int    `json:"partition_count"`
}

// dataDir is an open data directory.
type dataDir struct {
	path   string
	count  uint16
	lock   io.Closer
	logger *slog.Logger
}

func openDataDir(path string, count uint16, logger *slog.Logger) (*dataDir, error) {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, fmt.Errorf("embedded: create data directory: %w", err)
	}
	lock, err := lockDir(filepath.Join(path, lockFile))
	if err != nil {
		return nil, err
	}
	d := &dataDir{path: path, count: count, lock: lock, logger: logger}
	if err := d.checkMeta(); err != nil {
		lock.Close()
		return nil, err
	}
	return d, nil
}

func (d *dataDir) close() error { return d.lock.Close() }

func (d *dataDir) checkMeta() error {
	p := filepath.Join(d.path, metaFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return d.writeMeta()
	}
	if err != nil {
		return fmt.Errorf("embedded: read %s: %w", p, err)
	}
	var m dirMeta
	if err := json.Unmarshal(b, &m); err != nil || m.Format != metaFormat {
		return fmt.Errorf("embedded: %s is not a sierradb-embedded meta file: %w", p, ErrIncompatibleDir)
	}
	if m.Version != metaVersion {
		return fmt.Errorf("embedded: %s has format version %d, this server reads %d: %w", p, m.Version, metaVersion, ErrIncompatibleDir)
	}
	if m.PartitionCount != int(d.count) {
		return fmt.Errorf("embedded: %s holds %d partitions but the server is configured with %d: %w",
			d.path, m.PartitionCount, d.count, ErrIncompatibleDir)
	}
	return nil
}

func (d *dataDir) writeMeta() error {
	b, _ := json.Marshal(dirMeta{Format: metaFormat, Version: metaVersion, PartitionCount: int(d.count)})
	tmp := filepath.Join(d.path, metaFile+".tmp")
	if err := writeFileSync(tmp, append(b, '\n')); err != nil {
		return fmt.Errorf("embedded: write meta file: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(d.path, metaFile)); err != nil {
		return fmt.Errorf("embedded: write meta file: %w", err)
	}
	return syncDir(d.path)
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("embedded: sync directory %s: %w", path, err)
	}
	return nil
}

func (d *dataDir) logPath(pid uint16) string {
	return filepath.Join(d.path, fmt.Sprintf("%s%05d%s", logPrefix, pid, logSuffix))
}

// logFiles lists the partition ids that have a log file.
func (d *dataDir) logFiles() ([]uint16, error) {
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return nil, fmt.Errorf("embedded: read data directory: %w", err)
	}
	var ids []uint16
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, logPrefix) || !strings.HasSuffix(name, logSuffix) {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, logPrefix), logSuffix), 10, 16)
		if err != nil {
			continue
		}
		if n >= uint64(d.count) {
			return nil, fmt.Errorf("embedded: %s belongs to partition %d, beyond the %d configured: %w",
				name, n, d.count, ErrIncompatibleDir)
		}
		ids = append(ids, uint16(n))
	}
	return ids, nil
}

func logHeader(pid uint16) []byte {
	h := make([]byte, logHeaderSize)
	copy(h, logMagic)
	binary.BigEndian.PutUint16(h[8:], logFormat)
	binary.BigEndian.PutUint16(h[10:], pid)
	return h
}

// createLog creates an empty partition log, synced with its directory entry.
func (d *dataDir) createLog(pid uint16) (*partitionLog, error) {
	path := d.logPath(pid)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	if _, err := f.WriteAt(logHeader(pid), 0); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := syncDir(d.path); err != nil {
		f.Close()
		return nil, err
	}
	return &partitionLog{path: path, f: f, size: logHeaderSize}, nil
}

// partitionLog is an open partition log, positioned at its end.
type partitionLog struct {
	path string
	f    *os.File
	size int64
}

// append writes one record and syncs it. On failure it tries to cut the file
// back to its previous size; the caller treats the partition as broken.
func (l *partitionLog) append(body []byte) error {
	rec := make([]byte, recordHeaderSize, recordHeaderSize+len(body))
	binary.BigEndian.PutUint32(rec[0:], uint32(len(body)))
	binary.BigEndian.PutUint32(rec[4:], crc32.Checksum(body, castagnoli))
	rec = append(rec, body...)
	if _, err := l.f.WriteAt(rec, l.size); err != nil {
		_ = l.f.Truncate(l.size)
		return fmt.Errorf("write %s: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		_ = l.f.Truncate(l.size)
		return fmt.Errorf("sync %s: %w", l.path, err)
	}
	l.size += int64(len(rec))
	return nil
}

func (l *partitionLog) close() error {
	err := l.f.Sync()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func encodeTransaction(evs []*event) []byte {
	n := txHeaderSize
	for _, e := range evs {
		n += eventFixedSize + len(e.streamID) + len(e.name) + len(e.metadata) + len(e.payload)
	}
	b := make([]byte, 0, n)
	b = append(b, evs[0].txID[:]...)
	b = append(b, evs[0].key[:]...)
	b = binary.BigEndian.AppendUint64(b, evs[0].seq)
	b = binary.BigEndian.AppendUint32(b, uint32(len(evs)))
	for _, e := range evs {
		b = append(b, e.id[:]...)
		b = binary.BigEndian.AppendUint64(b, e.version)
		b = binary.BigEndian.AppendUint64(b, uint64(e.tsNanos))
		b = append(b, byte(len(e.streamID)))
		b = append(b, e.streamID...)
		b = append(b, byte(len(e.name)))
		b = append(b, e.name...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(e.metadata)))
		b = append(b, e.metadata...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(e.payload)))
		b = append(b, e.payload...)
	}
	return b
}

// decodeTransaction decodes a record body. Metadata and payloads alias body.
func decodeTransaction(body []byte, pid, count uint16) ([]*event, error) {
	if len(body) < txHeaderSize {
		return nil, errors.New("transaction header truncated")
	}
	var txID, key uuid.UUID
	copy(txID[:], body[0:16])
	copy(key[:], body[16:32])
	if sierradb.PartitionID(key, count) != pid {
		return nil, fmt.Errorf("partition key %s does not belong to partition %d", key, pid)
	}
	seq := binary.BigEndian.Uint64(body[32:40])
	n := binary.BigEndian.Uint32(body[40:44])
	if n == 0 || uint64(n)*eventFixedSize > uint64(len(body)-txHeaderSize) {
		return nil, fmt.Errorf("invalid event count %d", n)
	}
	rest := body[txHeaderSize:]
	short := errors.New("event truncated")
	take := func(k int) ([]byte, error) {
		if len(rest) < k {
			return nil, short
		}
		b := rest[:k:k]
		rest = rest[k:]
		return b, nil
	}
	evs := make([]*event, n)
	for i := range evs {
		fixed, err := take(32)
		if err != nil {
			return nil, err
		}
		e := &event{key: key, txID: txID, pid: pid, seq: seq + uint64(i)}
		copy(e.id[:], fixed[0:16])
		e.version = binary.BigEndian.Uint64(fixed[16:24])
		ts := binary.BigEndian.Uint64(fixed[24:32])
		if ts >= 1<<63 {
			return nil, errors.New("timestamp out of range")
		}
		e.tsNanos = int64(ts)
		for _, dst := range []*string{&e.streamID, &e.name} {
			l, err := take(1)
			if err != nil {
				return nil, err
			}
			s, err := take(int(l[0]))
			if err != nil {
				return nil, err
			}
			*dst = string(s)
		}
		if checkStreamID(e.streamID) != nil {
			return nil, fmt.Errorf("invalid stream id %q", e.streamID)
		}
		for _, dst := range []*[]byte{&e.metadata, &e.payload} {
			l, err := take(4)
			if err != nil {
				return nil, err
			}
			s, err := take(int(binary.BigEndian.Uint32(l)))
			if err != nil {
				return nil, err
			}
			*dst = s
		}
		evs[i] = e
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%d bytes after the last event", len(rest))
	}
	return evs, nil
}

// replayResult is what reading a partition log found.
type replayResult struct {
	events    [][]*event // transactions in order
	validSize int64      // bytes of header and intact records
	torn      string     // why the tail from validSize on is dropped; "" if none
}

// readLog reads and checks a whole partition log. A damaged tail is reported
// in torn; damage followed by further valid data is a [*CorruptLogError].
func readLog(path string, pid, count uint16) (*replayResult, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("embedded: read %s: %w", path, err)
	}
	res := &replayResult{}
	if len(data) < logHeaderSize {
		// A crash while the file was being created.
		res.torn = "incomplete file header"
		return res, nil
	}
	corrupt := func(off int, reason string) error {
		return &CorruptLogError{Path: path, Offset: int64(off), Reason: reason}
	}
	if string(data[:8]) != logMagic {
		return nil, corrupt(0, "not a partition log (bad magic)")
	}
	if v := binary.BigEndian.Uint16(data[8:]); v != logFormat {
		return nil, corrupt(8, fmt.Sprintf("unknown log format version %d", v))
	}
	if p := binary.BigEndian.Uint16(data[10:]); p != pid {
		return nil, corrupt(10, fmt.Sprintf("log of partition %d in the file of partition %d", p, pid))
	}
	off := logHeaderSize
	var seq uint64
	for off < len(data) {
		var reason string
		if len(data)-off < recordHeaderSize {
			reason = "incomplete record header"
		} else {
			l := uint64(binary.BigEndian.Uint32(data[off:]))
			sum := binary.BigEndian.Uint32(data[off+4:])
			switch {
			case l < txHeaderSize+eventFixedSize:
				reason = fmt.Sprintf("invalid record length %d", l)
			case uint64(off)+recordHeaderSize+l > uint64(len(data)):
				reason = fmt.Sprintf("record length %d past the end of the file", l)
			default:
				body := data[off+recordHeaderSize : off+recordHeaderSize+int(l)]
				if crc32.Checksum(body, castagnoli) != sum {
					reason = "checksum mismatch"
					break
				}
				evs, err := decodeTransaction(body, pid, count)
				if err != nil {
					return nil, corrupt(off, "record with a valid checksum cannot be decoded: "+err.Error())
				}
				if evs[0].seq != seq {
					return nil, corrupt(off, fmt.Sprintf("record starts at sequence %d, expected %d", evs[0].seq, seq))
				}
				res.events = append(res.events, evs)
				seq += uint64(len(evs))
				off += recordHeaderSize + int(l)
				continue
			}
		}
		if next := findRecord(data, off+1, pid, count, seq); next >= 0 {
			return nil, corrupt(off, fmt.Sprintf("%s, and a valid record follows at offset %d", reason, next))
		}
		res.torn = reason
		break
	}
	res.validSize = int64(off)
	return res, nil
}

// findRecord looks for a plausible intact record at any offset from `from`
// on: a sane header for this partition at or after sequence minSeq, with a
// matching checksum. It returns its offset, or -1.
func findRecord(data []byte, from int, pid, count uint16, minSeq uint64) int {
	for o := from; o+recordHeaderSize+txHeaderSize+eventFixedSize <= len(data); o++ {
		l := uint64(binary.BigEndian.Uint32(data[o:]))
		if l < txHeaderSize+eventFixedSize || uint64(o)+recordHeaderSize+l > uint64(len(data)) {
			continue
		}
		body := data[o+recordHeaderSize : o+recordHeaderSize+int(l)]
		var key uuid.UUID
		copy(key[:], body[16:32])
		if sierradb.PartitionID(key, count) != pid || binary.BigEndian.Uint64(body[32:40]) < minSeq {
			continue
		}
		n := binary.BigEndian.Uint32(body[40:44])
		if n == 0 || uint64(n)*eventFixedSize > l-txHeaderSize {
			continue
		}
		if crc32.Checksum(body, castagnoli) == binary.BigEndian.Uint32(data[o+4:]) {
			return o
		}
	}
	return -1
}

// openLog replays a partition log into apply, cuts a torn tail away and
// returns the log ready for appends.
func (d *dataDir) openLog(pid uint16, apply func([]*event)) (*partitionLog, error) {
	path := d.logPath(pid)
	res, err := readLog(path, pid, d.count)
	if err != nil {
		return nil, err
	}
	for _, tx := range res.events {
		apply(tx)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("embedded: open %s: %w", path, err)
	}
	if res.torn != "" {
		fi, _ := f.Stat()
		var size int64
		if fi != nil {
			size = fi.Size()
		}
		d.logger.Warn("dropping the torn tail of a partition log",
			"path", path, "offset", res.validSize, "bytes", size-res.validSize, "reason", res.torn)
		var cerr error
		if res.validSize < logHeaderSize {
			res.validSize = logHeaderSize
			cerr = f.Truncate(0)
			if cerr == nil {
				_, cerr = f.WriteAt(logHeader(pid), 0)
			}
		}
		if cerr == nil {
			cerr = f.Truncate(res.validSize)
		}
		if cerr == nil {
			cerr = f.Sync()
		}
		if cerr != nil {
			f.Close()
			return nil, fmt.Errorf("embedded: cut the torn tail of %s: %w", path, cerr)
		}
	}
	return &partitionLog{path: path, f: f, size: res.validSize}, nil
}

// load opens every partition log of the directory into st.
func (st *store) load(d *dataDir) error {
	ids, err := d.logFiles()
	if err != nil {
		return err
	}
	for _, pid := range ids {
		p := st.parts[pid]
		l, err := d.openLog(pid, func(evs []*event) {
			st.applyLocked(p, evs)
			for _, e := range evs {
				if _, ok := st.bindings[e.streamID]; !ok {
					st.bindings[e.streamID] = e.key
				}
			}
		})
		if err != nil {
			for _, q := range st.parts {
				if q.log != nil {
					q.log.f.Close()
				}
			}
			return err
		}
		p.log = l
	}
	st.dir = d
	return nil
}
