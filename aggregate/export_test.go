package aggregate

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
