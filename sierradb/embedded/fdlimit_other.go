//go:build !unix

package embedded

// fileLimit returns the soft limit on open files, if known.
func fileLimit() (uint64, bool) { return 0, false }
