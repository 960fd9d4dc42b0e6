//go:build !unix

package embedded

import (
	"fmt"
	"os"
)

// lockDir opens the lock file. Outside Unix no lock is taken: two servers on
// one directory are not detected.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("embedded: open lock file: %w", err)
	}
	return f, nil
}
