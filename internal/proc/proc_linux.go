package proc

import (
	"os"
	"syscall"
)

// sysProcAttr puts the child in its own process group, so that stopping it
// stops what it started, and kills it when the test binary dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func kill(p *os.Process)      { syscall.Kill(-p.Pid, syscall.SIGKILL) }
func terminate(p *os.Process) { syscall.Kill(-p.Pid, syscall.SIGTERM) }
func interrupt(p *os.Process) { syscall.Kill(-p.Pid, syscall.SIGINT) }

// GracefulStop is true where Stop asks the process to stop rather than
// killing it, so that a non-zero exit status after Stop is the program's.
const GracefulStop = true
