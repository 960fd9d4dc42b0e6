package embedded

import (
	"bufio"
	"io"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
)

// SyncCount returns how many partition log records s has fsynced.
func SyncCount(s *Server) uint64 { return s.store.syncs.Load() }

// SetSyncFault makes every fsync of a partition log record of s call f
// first, with the record's partition; an error from f fails the fsync as a
// failing disk would. nil removes it.
func SetSyncFault(s *Server, f func(partition uint16) error) {
	if f == nil {
		s.store.syncFault.Store(nil)
		return
	}
	s.store.syncFault.Store(&f)
}

// FrameBudgetUsed returns the bytes of MaxTotalFrameBytes in use.
func FrameBudgetUsed(s *Server) int64 { return s.frameBudget.Used() }

// SeedEvent is one event for SeedDir.
type SeedEvent struct {
	Key      uuid.UUID
	StreamID string
	Name     string
	Payload  []byte
	Time     time.Time
}

// SeedDir writes the logs of a directory directly, one single-event
// transaction per event, exactly as EAPPENDs would write them but with one
// fsync per log at the end: benchmarks need millions of events. next returns
// false when there are no more.
func SeedDir(dir string, count uint16, next func(*SeedEvent) bool) error {
	d, err := openDataDir(dir, count, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer d.close()
	logs := make([]*partitionLog, count)
	bufs := make([]*bufio.Writer, count)
	seqs := make([]uint64, count)
	versions := map[string]uint64{}
	var e SeedEvent
	for next(&e) {
		pid := sierradb.PartitionID(e.Key, count)
		if logs[pid] == nil {
			if logs[pid], err = d.createLog(pid); err != nil {
				return err
			}
			bufs[pid] = bufio.NewWriterSize(io.NewOffsetWriter(logs[pid].f, fileHeaderSize), 1<<20)
		}
		ev := &event{id: sierradb.NewEventIDAt(e.Key, e.Time), key: e.Key, txID: uuid.New(), pid: pid, seq: seqs[pid],
			version: versions[e.StreamID], tsNanos: e.Time.UnixNano(), streamID: e.StreamID, name: e.Name, payload: e.Payload}
		ev.txID[8] |= 0x80
		body := encodeBody([]*event{ev})
		var hdr [recordHeaderSize]byte
		encodeRecordHeader(hdr[:], logs[pid].salt, logs[pid].size,
			recordHeader{bodyLen: uint32(len(body)), bodyCRC: crc32Body(body), count: 1, firstSeq: ev.seq})
		bufs[pid].Write(hdr[:])
		bufs[pid].Write(body)
		logs[pid].size += uint64(recordHeaderSize + len(body))
		seqs[pid]++
		versions[e.StreamID]++
	}
	for pid, l := range logs {
		if l == nil {
			continue
		}
		if err := bufs[pid].Flush(); err != nil {
			return err
		}
		if err := l.close(); err != nil {
			return err
		}
	}
	return nil
}
