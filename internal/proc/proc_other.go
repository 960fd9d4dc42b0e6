//go:build !unix

package proc

import (
	"os"
	"syscall"
)

// sysProcAttr: outside Unix a child is a plain child process.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// Windows has no signal that asks a process to stop: each of these kills it.
func kill(p *os.Process)      { p.Kill() }
func terminate(p *os.Process) { p.Kill() }
func interrupt(p *os.Process) { p.Kill() }

// GracefulStop is false: Stop kills, so the exit status says nothing.
const GracefulStop = false
