package embedded

// Directory layout
//
//	<dir>/meta.json               {"format":"sierradb-embedded","version":2,"partition_count":N}
//	<dir>/LOCK                    held with flock(2) while a server uses the directory
//	<dir>/partition-NNNNN.log     one append-only log per partition, created on its first append
//	<dir>/partition-NNNNN.log.damaged-<offset>   what Config.Salvage cut off a damaged log
//
// The log format is described in format.go.

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	metaFormat  = "sierradb-embedded"
	metaVersion = 2
	metaFile    = "meta.json"
	lockFile    = "LOCK"
	logPrefix   = "partition-"
	logSuffix   = ".log"
)

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
		return fmt.Errorf("embedded: %s has format version %d, this server reads version %d only; "+
			"use an empty directory (data from the older format cannot be read): %w", p, m.Version, metaVersion, ErrIncompatibleDir)
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

func newSalt() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

// createLog creates an empty partition log (replacing a file that holds no
// record), synced with its directory entry.
func (d *dataDir) createLog(pid uint16) (*partitionLog, error) {
	path := d.logPath(pid)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	salt := newSalt()
	if _, err := f.WriteAt(fileHeader(pid, salt), 0); err != nil {
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
	return &partitionLog{path: path, f: f, salt: salt, size: fileHeaderSize}, nil
}

// partitionLog is an open partition log, positioned at its end. size is
// only written under the partition's lock.
type partitionLog struct {
	path string
	f    *os.File
	salt uint64
	size uint64
}

// append writes one record and syncs it, returning its offset. On failure
// it tries to cut the file back to its previous size; the caller treats the
// partition as broken. fault, when not nil, runs before the fsync and fails
// it when it returns an error (tests only).
func (l *partitionLog) append(firstSeq uint64, count int, body []byte, fault func() error) (uint64, error) {
	off := l.size
	rec := make([]byte, recordHeaderSize, recordHeaderSize+len(body))
	h := recordHeader{bodyLen: uint32(len(body)), count: uint32(count), firstSeq: firstSeq}
	h.bodyCRC = crc32Body(body)
	encodeRecordHeader(rec, l.salt, off, h)
	rec = append(rec, body...)
	if _, err := l.f.WriteAt(rec, int64(off)); err != nil {
		_ = l.f.Truncate(int64(off))
		return 0, fmt.Errorf("write %s: %w", l.path, err)
	}
	sync := l.f.Sync
	if fault != nil {
		sync = func() error {
			if err := fault(); err != nil {
				return err
			}
			return l.f.Sync()
		}
	}
	if err := sync(); err != nil {
		_ = l.f.Truncate(int64(off))
		return 0, fmt.Errorf("sync %s: %w", l.path, err)
	}
	l.size += uint64(len(rec))
	return off, nil
}

func (l *partitionLog) close() error {
	err := l.f.Sync()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}
