package embedded

import (
	"fmt"
	"io"

	"github.com/gofrs/flock"
)

// lockDir takes an exclusive lock on path (gofrs/flock: flock(2) on Unix,
// LockFileEx on Windows) without waiting. The operating system drops it when
// the process dies, so a crashed server does not leave the directory
// locked. Closing the result releases it.
func lockDir(path string) (io.Closer, error) {
	l := flock.New(path)
	ok, err := l.TryLock()
	if err != nil {
		return nil, fmt.Errorf("embedded: lock %s: %w", path, err)
	}
	if !ok {
		return nil, fmt.Errorf("embedded: %s: %w", path, ErrDirLocked)
	}
	return l, nil
}
