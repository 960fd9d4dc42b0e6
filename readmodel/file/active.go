package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/esmill/esmill/readmodel"
)

const activeFile = "_active.json"

// SetActive implements [readmodel.Switcher]: the pointers live in
// "_active.json", replaced atomically.
func (s *Store[M]) SetActive(ctx context.Context, name, projection string) error {
	if err := readmodel.ValidateName(projection); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	lock, err := lockFileWait(filepath.Join(s.cfg.Dir, "_active.lock"))
	if err != nil {
		return fmt.Errorf("file: %w", err)
	}
	defer lock.Close()
	m, err := s.readActive()
	if err != nil {
		return err
	}
	m[name] = projection
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(s.cfg.Dir, activeFile), b, !s.cfg.NoSync, s.fault)
}

// Active implements [readmodel.Switcher].
func (s *Store[M]) Active(ctx context.Context, name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.readActive()
	if err != nil {
		return "", err
	}
	p, ok := m[name]
	if !ok {
		return "", readmodel.ErrNoActive
	}
	return p, nil
}

func (s *Store[M]) readActive() (map[string]string, error) {
	m := make(map[string]string)
	b, err := os.ReadFile(filepath.Join(s.cfg.Dir, activeFile))
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("file: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("file: %s: %w", activeFile, err)
	}
	return m, nil
}
