//go:build !unix

package integration_test

import "os/exec"

// terminate: outside Unix there is no signal to ask a process to stop.
func terminate(cmd *exec.Cmd) { cmd.Process.Kill() }
