//go:build unix && !linux

package proc

import (
	"os"
	"syscall"
)

// sysProcAttr puts the child in its own process group, so that stopping it
// stops what it started. Without Pdeathsig (Linux only), a child outlives a
// test binary that is killed.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func kill(p *os.Process)      { syscall.Kill(-p.Pid, syscall.SIGKILL) }
func terminate(p *os.Process) { syscall.Kill(-p.Pid, syscall.SIGTERM) }
func interrupt(p *os.Process) { syscall.Kill(-p.Pid, syscall.SIGINT) }

// GracefulStop is true where Stop asks the process to stop rather than
// killing it, so that a non-zero exit status after Stop is the program's.
const GracefulStop = true
