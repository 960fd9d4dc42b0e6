package file

import (
	"context"
	"io"

	"github.com/gofrs/flock"
)

// lockFileContext takes a lock on path (gofrs/flock: flock(2) on Unix,
// LockFileEx on Windows), shared or exclusive, waiting until it is free or
// ctx is done. Closing the result releases it. Locks of two stores in one
// process exclude each other like those of two processes.
func lockFileContext(ctx context.Context, path string, shared bool) (io.Closer, error) {
	l := flock.New(path)
	try := l.TryLockContext
	if shared {
		try = l.TryRLockContext
	}
	ok, err := try(ctx, lockRetry)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ctx.Err()
	}
	return l, nil
}

// lockFileWait takes an exclusive lock on path, waiting for it.
func lockFileWait(path string) (io.Closer, error) {
	l := flock.New(path)
	if err := l.Lock(); err != nil {
		return nil, err
	}
	return l, nil
}
