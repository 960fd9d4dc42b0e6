package file

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/internal/wholemodel"
)

// commit writes the projection's new state and swaps it in.
func (s *Store[M]) commit(t *Tx[M], advances []readmodel.Advance) error {
	raw, err := codec.Marshal(s.cfg.Format, t.b.Model)
	if err != nil {
		return fmt.Errorf("file: encode model: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The transaction holds the projection's lock: the copy is the latest
	// committed state unless a Reset of this store came in between, which
	// Check sees.
	p := s.projs[t.b.Projection]
	if s.closed || p == nil {
		return ErrClosed
	}
	if err := p.Check(t.b.Projection, t.b.Gen, advances); err != nil {
		return err
	}
	next := p.Next(advances, t.b.Parked)
	return s.writeLocked(t.b.Projection, p, next, raw, t.b.Model)
}

// writeLocked writes a projection's new state and swaps it in. The caller
// holds s.mu and the projection's exclusive lock.
func (s *Store[M]) writeLocked(projection string, p *projection[M], next wholemodel.Committed, raw []byte, model M) error {
	b, err := s.encodeDocument(projection, next, raw)
	if err != nil {
		return err
	}
	commit, err := s.newCommit(projection)
	if err != nil {
		p.commit = ""
		return err
	}
	if err := writeAtomic(s.Path(projection), b, !s.cfg.NoSync); err != nil {
		p.commit = ""
		return err
	}
	p.raw, p.model, p.Committed, p.commit = raw, model, next, commit
	return nil
}

// encodeDocument encodes a projection's file.
func (s *Store[M]) encodeDocument(projection string, c wholemodel.Committed, raw []byte) ([]byte, error) {
	doc := document{Projection: projection, Checkpoints: make(map[string]uint64, len(c.Checkpoints)), Server: c.Server}
	for k, v := range c.Checkpoints {
		doc.Checkpoints[strconv.Itoa(int(k))] = v
	}
	for _, ev := range wholemodel.SortedParked(c.Parked) {
		doc.Parked = append(doc.Parked, parkedDoc{
			Partition: ev.Partition, Sequence: ev.Sequence, EventID: ev.EventID, StreamID: ev.StreamID,
			StreamVersion: ev.StreamVersion, Name: ev.Name, Payload: ev.Payload, Metadata: ev.Metadata,
			Cause: string(ev.Cause), Reason: ev.Reason, Attempts: ev.Attempts, ParkedAt: ev.ParkedAt.UnixNano(),
		})
	}
	var b []byte
	var err error
	if s.cfg.Format == codec.CBOR {
		doc.ModelCBOR = raw
		b, err = codec.Marshal(codec.CBOR, doc)
	} else {
		doc.Model = raw
		b, err = json.MarshalIndent(doc, "", "  ")
	}
	if err != nil {
		return nil, fmt.Errorf("file: encode: %w", err)
	}
	return b, nil
}

// writeAtomic replaces path with data: a temporary file beside it,
// written and fsynced, renamed over path, then the directory fsynced.
func writeAtomic(path string, data []byte, sync bool) (err error) {
	dir, base := filepath.Split(path)
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("file: write %s: %w", f.Name(), err)
	}
	if sync {
		if err = f.Sync(); err != nil {
			return fmt.Errorf("file: fsync %s: %w", f.Name(), err)
		}
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("file: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("file: %w", err)
	}
	if sync {
		return syncDir(dir)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("file: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("file: fsync %s: %w", dir, err)
	}
	return nil
}
