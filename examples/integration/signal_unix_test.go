//go:build unix

package integration_test

import (
	"os/exec"
	"syscall"
)

// terminate asks a worker to stop as a service manager would.
func terminate(cmd *exec.Cmd) { cmd.Process.Signal(syscall.SIGTERM) }
