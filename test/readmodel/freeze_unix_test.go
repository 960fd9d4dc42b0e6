//go:build unix

package readmodel_test

import "syscall"

// freeze stops (true) or continues (false) a process, to hold it past its
// leases; canFreeze says whether the platform can.
func freeze(pid int, stop bool) error {
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	return syscall.Kill(pid, sig)
}

const canFreeze = true
