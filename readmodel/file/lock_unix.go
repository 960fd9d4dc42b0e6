//go:build unix

package file

import (
	"errors"
	"os"
	"syscall"
)

var errLocked = errors.New("file: locked")

// lockFile opens path and takes an exclusive flock on it without waiting.
func lockFile(path string) (*os.File, error) {
	return flock(path, syscall.LOCK_EX|syscall.LOCK_NB)
}

// lockFileWait is lockFile that waits for the lock.
func lockFileWait(path string) (*os.File, error) {
	return flock(path, syscall.LOCK_EX)
}

func flock(path string, how int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, err
	}
	return f, nil
}
