package aggregate

import "github.com/google/uuid"

// Arrivals returns how many commands have reached the lock of a cached
// entity (0 when it is not cached): a test that submits commands in a
// known order waits on it instead of sleeping.
func Arrivals(x *Executor, streamID string) uint64 {
	x.cache.mu.Lock()
	defer x.cache.mu.Unlock()
	if e := x.cache.entries[streamID]; e != nil {
		return e.arrivals.Load()
	}
	return 0
}

// GroupQueued returns how many appends wait in the group of a partition
// key (WithGroupCommit) behind the one in flight.
func GroupQueued(x *Executor, key uuid.UUID) int {
	x.groups.mu.Lock()
	defer x.groups.mu.Unlock()
	if q := x.groups.byKey[key]; q != nil {
		return len(q.queue)
	}
	return 0
}
