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
	next := p.Next(advances, &t.b.BatchEvents)
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
	if err := writeAtomic(s.Path(projection), b, !s.cfg.NoSync, s.fault); err != nil {
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
		doc.Parked = append(doc.Parked, toParkedDoc(ev))
	}
	for _, ev := range wholemodel.SortedResolved(c.Resolved) {
		doc.Resolved = append(doc.Resolved, resolvedDoc{parkedDoc: toParkedDoc(ev.ParkedEvent),
			Action: string(ev.Resolution.Action), By: ev.Resolution.By, Note: ev.Resolution.Note,
			ResolvedAt: ev.Resolution.At.UnixNano()})
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
// fault, when not nil, runs before each step and fails it (tests only).
func writeAtomic(path string, data []byte, sync bool, fault func(step string) error) (err error) {
	step := func(name string) error {
		if fault == nil {
			return nil
		}
		return fault(name)
	}
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
	if err = step("write"); err == nil {
		_, err = f.Write(data)
	}
	if err != nil {
		return fmt.Errorf("file: write %s: %w", f.Name(), err)
	}
	if sync {
		if err = step("fsync"); err == nil {
			err = f.Sync()
		}
		if err != nil {
			return fmt.Errorf("file: fsync %s: %w", f.Name(), err)
		}
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("file: %w", err)
	}
	if err = step("rename"); err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("file: %w", err)
	}
	if sync {
		if err = step("dirsync"); err != nil {
			return fmt.Errorf("file: fsync %s: %w", dir, err)
		}
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
