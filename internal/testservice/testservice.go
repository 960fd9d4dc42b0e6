package testservice

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InCI reports whether the CI variable is set to true: services are then
// required, and a missing one fails the test instead of skipping it.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// unavailable skips t, or fails it in CI.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("required service unavailable under CI=true: %s", msg)
	}
	t.Skipf("service unavailable (set CI=true to make this a failure): %s", msg)
}

var (
	mu       sync.Mutex
	services = map[string]*service{}
)

type service struct {
	once sync.Once
	addr string
	err  error
	stop func()
}

// shared starts a service once per test binary.
func shared(name string, start func() (addr string, stop func(), err error)) (string, error) {
	mu.Lock()
	s, ok := services[name]
	if !ok {
		s = &service{}
		services[name] = s
	}
	mu.Unlock()
	s.once.Do(func() { s.addr, s.stop, s.err = start() })
	return s.addr, s.err
}

// Main runs the tests of a package and then stops every service they
// started. Call it from TestMain: os.Exit(testservice.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	StopAll()
	return code
}

// StopAll stops every service started so far.
func StopAll() {
	mu.Lock()
	defer mu.Unlock()
	for name, s := range services {
		if s.stop != nil {
			s.stop()
		}
		delete(services, name)
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

// Process is a running child process with its log file.
type Process struct {
	cmd     *exec.Cmd
	LogPath string
	Dir     string
	exited  chan struct{}
	waitErr error
}

// StartProcess starts a program with its output going to a log file in dir.
func StartProcess(dir, name string, args []string, env []string) (*Process, error) {
	logPath := filepath.Join(dir, filepath.Base(name)+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
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

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Kill sends SIGKILL and waits for the process to end.
func (p *Process) Kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// Stop sends SIGTERM, waits up to timeout, then kills.
func (p *Process) Stop(timeout time.Duration) {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.Kill()
	}
}

// LogTail returns the last n bytes of the log, for failure messages.
func (p *Process) LogTail(n int) string {
	b, _ := os.ReadFile(p.LogPath)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// WaitReady polls check until it succeeds, the process exits or the
// timeout passes.
func (p *Process) WaitReady(timeout time.Duration, check func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("process exited (%v); log:\n%s", p.waitErr, p.LogTail(4000))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		last = check(ctx)
		cancel()
		if last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.Join(fmt.Errorf("not ready after %s; log:\n%s", timeout, p.LogTail(4000)), last)
}

// startOnFreePort starts a server on a free loopback port and waits until
// ready answers, trying another port (three times in all) if the server
// does not come up, for another process may take a free port first.
func startOnFreePort(dir, bin string, args func(addr string, port int) []string, env []string,
	timeout time.Duration, ready func(ctx context.Context, addr string) error) (*Process, string, error) {
	var lastErr error
	for range 3 {
		port, err := FreePort()
		if err != nil {
			return nil, "", err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		proc, err := StartProcess(dir, bin, args(addr, port), env)
		if err != nil {
			return nil, "", err
		}
		if err := proc.WaitReady(timeout, func(ctx context.Context) error { return ready(ctx, addr) }); err != nil {
			proc.Kill()
			lastErr = err
			continue
		}
		return proc, addr, nil
	}
	return nil, "", lastErr
}

// pingLine sends a RESP PING on a fresh connection and expects +PONG.
func pingLine(ctx context.Context, addr string, request string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte(request)); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}
