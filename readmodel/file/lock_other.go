//go:build !unix

package file

import (
	"errors"
	"os"
)

var errLocked = errors.New("file: locked")

// lockFile opens path. Without flock there is no lock: run one store per
// directory.
func lockFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
}

func lockFileWait(path string) (*os.File, error) { return lockFile(path) }
