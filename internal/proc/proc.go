package proc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Process is a running child process with its log file.
type Process struct {
	cmd     *exec.Cmd
	LogPath string
	Dir     string
	exited  chan struct{}
	waitErr error // set before exited is closed
}

// Start starts a program in dir with its output going to a log file there
// (named after the program). env is added to the test binary's environment.
func Start(dir, name string, args []string, env []string) (*Process, error) {
	logPath := filepath.Join(dir, filepath.Base(name)+".log")
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{cmd: cmd, LogPath: logPath, Dir: dir, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	return p, nil
}

// Exited is closed when the process has ended.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// ExitErr is the process's exit status once Exited is closed (nil for a
// clean exit), and nil before.
func (p *Process) ExitErr() error {
	select {
	case <-p.exited:
		return p.waitErr
	default:
		return nil
	}
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Kill kills the process (and, where the platform has them, its process
// group) and waits for it to end.
func (p *Process) Kill() {
	kill(p.cmd.Process)
	<-p.exited
}

// Stop asks the process to stop (SIGTERM to its process group on Unix),
// waits up to timeout, then kills it.
func (p *Process) Stop(timeout time.Duration) {
	terminate(p.cmd.Process)
	p.waitOrKill(timeout)
}

// StopInterrupt is Stop with SIGINT, for servers whose SIGINT is the fast
// clean shutdown (PostgreSQL).
func (p *Process) StopInterrupt(timeout time.Duration) {
	interrupt(p.cmd.Process)
	p.waitOrKill(timeout)
}

func (p *Process) waitOrKill(timeout time.Duration) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		p.Kill()
	}
}

// Log returns the process's output so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// LogTail returns the last n bytes of the log, for failure messages.
func (p *Process) LogTail(n int) string {
	s := p.Log()
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// ErrExited reports that a process ended while a test waited for it.
var ErrExited = errors.New("process exited")

// WaitReady polls check until it succeeds, the process exits or the timeout
// passes. The error carries the end of the process's output.
func (p *Process) WaitReady(ctx context.Context, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("%w (%v) before it was ready; output:\n%s", ErrExited, p.waitErr, p.LogTail(4000))
		default:
		}
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s (last check: %v); output:\n%s", timeout, last, p.LogTail(4000))
		case <-p.exited:
		case <-tick.C:
		}
	}
}

// LogContains returns a readiness check that passes once the process's
// output holds s.
func (p *Process) LogContains(s string) func(context.Context) error {
	return func(context.Context) error {
		if !strings.Contains(p.Log(), s) {
			return fmt.Errorf("output has no %q yet", s)
		}
		return nil
	}
}

// Alive reports whether a process whose exit closes exited is still
// running.
func Alive(exited <-chan struct{}) bool {
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
