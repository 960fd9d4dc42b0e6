//go:build !linux

package lease_test

// childMain: the multi-process test runs on Linux only.
func childMain() int { return 2 }
