package file

// SetFault makes each step of s's atomic file replacement ("write",
// "fsync", "rename", "dirsync") call f first; an error from f fails that
// step as a failing disk would. nil removes it. Call it before s is used.
func SetFault[M any](s *Store[M], f func(step string) error) { s.fault = f }
