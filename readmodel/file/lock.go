package file

import (
	"errors"
	"io"

	"github.com/gofrs/flock"
)

var errLocked = errors.New("file: locked")

// lockFile takes an exclusive lock on path (gofrs/flock: flock(2) on Unix,
// LockFileEx on Windows) without waiting; errLocked when another store or
// process holds it. Closing the result releases it.
func lockFile(path string) (io.Closer, error) {
	l := flock.New(path)
	ok, err := l.TryLock()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errLocked
	}
	return l, nil
}

// lockFileWait is lockFile that waits for the lock.
func lockFileWait(path string) (io.Closer, error) {
	l := flock.New(path)
	if err := l.Lock(); err != nil {
		return nil, err
	}
	return l, nil
}
