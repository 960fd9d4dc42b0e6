package embedded

// SyncCount returns how many partition log records s has fsynced.
func SyncCount(s *Server) uint64 { return s.store.syncs.Load() }

// FrameBudgetUsed returns the bytes of MaxTotalFrameBytes in use.
func FrameBudgetUsed(s *Server) int64 { return s.frameBudget.Used() }
