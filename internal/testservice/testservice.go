package testservice

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/esmill/esmill/internal/leakcheck"
	"github.com/esmill/esmill/internal/proc"
	"github.com/esmill/esmill/sierradb/sierradbtest"
)

// InCI reports whether the CI variable is set to true: services are then
// required, and a missing one fails the test instead of skipping it.
func InCI() bool { return sierradbtest.InCI() }

// errNotInstalled marks a service whose program is missing: the one start
// failure that skips a test (outside CI).
var errNotInstalled = errors.New("not installed")

// require ends t when a service could not be had: a missing program skips
// it (fails under CI=true), any other failure fails it.
func require(t testing.TB, service string, err error) {
	t.Helper()
	if errors.Is(err, errNotInstalled) || errors.Is(err, sierradbtest.ErrNotInstalled) {
		sierradbtest.Unavailable(t, "%s: %v", service, err)
		return
	}
	t.Fatalf("%s failed to start: %v", service, err)
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

// Main runs the tests of a package, stops every service they started, and
// then fails the run if a goroutine is still running (leakcheck.After, with
// opts for the goroutines a package cannot stop). Call it from TestMain:
// os.Exit(testservice.Main(m)).
func Main(m *testing.M, opts ...leakcheck.Option) int {
	code := m.Run()
	StopAll()
	return leakcheck.After(code, opts...)
}

// StopAll stops every service started so far.
func StopAll() {
	defer removeBuilds()
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
func FreePort() (int, error) { return proc.FreePort() }

// Process is a running child process with its log file.
type Process = proc.Process

// StartProcess starts a program with its output going to a log file in dir.
func StartProcess(dir, name string, args []string, env []string) (*Process, error) {
	return proc.Start(dir, name, args, env)
}

// startOnFreePort starts a server on a free loopback port and waits until
// ready says it is this process's server, trying another port (three times
// in all) if the server does not come up, for another process may take a
// free port first.
func startOnFreePort(dir, bin string, args func(addr string, port int) []string, env []string,
	timeout time.Duration, ready func(ctx context.Context, addr string, p *Process) error) (*Process, string, error) {
	var lastErr error
	for range 3 {
		port, err := FreePort()
		if err != nil {
			return nil, "", err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		p, err := StartProcess(dir, bin, args(addr, port), env)
		if err != nil {
			return nil, "", err
		}
		err = p.WaitReady(context.Background(), timeout, func(ctx context.Context) error { return ready(ctx, addr, p) })
		if err == nil {
			return p, addr, nil
		}
		p.Kill()
		lastErr = fmt.Errorf("on %s: %w", addr, err)
	}
	return nil, "", lastErr
}
