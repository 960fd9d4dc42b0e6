package file

// Sharing a directory between stores and processes: each projection has a
// lock file, held exclusively by a transaction from Begin to its end and
// shared by readers, and a commit file naming the latest commit. A store
// keeps a decoded copy of each projection and reads the file again only
// when the commit file names another commit than its copy's.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/esmill/esmill/readmodel"
)

// lockRetry is how often a wait for a projection's lock tries again.
const lockRetry = time.Millisecond

// lock takes the projection's lock file: exclusive for a transaction,
// shared for a reader. The returned function releases it; it is safe to
// call more than once.
func (s *Store[M]) lock(ctx context.Context, projection string, shared bool) (func(), error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return nil, err
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	l, err := lockFileContext(ctx, filepath.Join(s.cfg.Dir, projection+".lock"), shared)
	if err != nil {
		return nil, fmt.Errorf("file: lock %s: %w", projection, err)
	}
	done := false
	return func() {
		if !done {
			done = true
			l.Close()
		}
	}, nil
}

// view calls fn with the projection's latest committed state, under a
// shared lock.
func (s *Store[M]) view(ctx context.Context, projection string, fn func(p *projection[M])) error {
	unlock, err := s.lock(ctx, projection, true)
	if err != nil {
		return err
	}
	defer unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.syncLocked(projection, false)
	if err != nil {
		return err
	}
	fn(p)
	return nil
}

func (s *Store[M]) commitPath(projection string) string {
	return filepath.Join(s.cfg.Dir, projection+".commit")
}

// syncLocked returns the store's copy of the projection, read again from
// its file if another store committed since. The caller holds s.mu and the
// projection's lock (exclusive when it will write: then stale temporary
// files of a crashed writer are removed too).
func (s *Store[M]) syncLocked(name string, exclusive bool) (*projection[M], error) {
	if s.closed {
		return nil, ErrClosed
	}
	commit := ""
	if b, err := os.ReadFile(s.commitPath(name)); err == nil {
		commit = strings.TrimSpace(string(b))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("file: %w", err)
	}
	p := s.projs[name]
	if p == nil || p.commit == "" || p.commit != commit {
		fresh, err := s.load(name)
		if err != nil {
			return nil, err
		}
		if p != nil {
			// Transactions that began on the old copy must not commit.
			fresh.Gen = p.Gen + 1
			fresh.swept = p.swept
		}
		fresh.commit = commit
		p = fresh
		s.projs[name] = p
	}
	if exclusive && !p.swept {
		// Temporary files of a writer that crashed: nobody writes while
		// the exclusive lock is held.
		olds, _ := filepath.Glob(filepath.Join(s.cfg.Dir, "."+name+s.ext+".tmp-*"))
		for _, o := range olds {
			os.Remove(o)
		}
		p.swept = true
	}
	return p, nil
}

// newCommit names a new commit of the projection in its commit file,
// before the projection's file is replaced: should the replacement not
// happen, the other stores read the file again and find the old state,
// which is right. The caller holds the exclusive lock.
func (s *Store[M]) newCommit(projection string) (string, error) {
	var b [12]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	if err := os.WriteFile(s.commitPath(projection), []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("file: %w", err)
	}
	return id, nil
}
