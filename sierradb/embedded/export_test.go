package embedded

// SyncCount returns how many partition log records s has fsynced.
func SyncCount(s *Server) uint64 { return s.store.syncs.Load() }
