package sierradbtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/esmill/esmill/internal/proc"
)

// Tester is the part of *testing.T (or *testing.B, testing.TB) that this
// package uses.
type Tester interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
}

// InCI reports whether the CI variable is "true" (or "1"): services are
// then required, and a missing one fails the test instead of skipping it.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// Unavailable ends t because a service it needs cannot be had: it skips t
// with the reason, or fails it under CI=true.
func Unavailable(t Tester, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("required service unavailable under CI=true: %s", msg)
		return
	}
	t.Skipf("service unavailable (set CI=true to make this a failure): %s", msg)
}

// RunT starts a server for a test and closes it when the test ends. It takes
// at most one Config; none means the defaults. Without a binary the test is
// skipped, or failed under CI=true (see [Unavailable]); any other failure
// fails the test with the server's output.
func RunT(t Tester, cfg ...Config) *Server {
	t.Helper()
	var c Config
	switch len(cfg) {
	case 0:
	case 1:
		c = cfg[0]
	default:
		t.Fatalf("sierradbtest.RunT: at most one Config, got %d", len(cfg))
		return nil
	}
	s, err := Start(context.Background(), c)
	if errors.Is(err, ErrNotInstalled) {
		Unavailable(t, "real SierraDB: %v", err)
		return nil
	}
	if err != nil {
		t.Fatalf("%v", err)
		return nil
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return s
}

// Shared is one server for every test of a test binary, started on first
// use. Declare it next to TestMain and close it there:
//
//	var sierra sierradbtest.Shared
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		sierra.Close()
//		os.Exit(code)
//	}
//
//	func TestX(t *testing.T) { addr := sierra.Addr(t) }
//
// Tests share its data: give each its own streams.
type Shared struct {
	// Config is what the server is started with.
	Config Config

	mu      sync.Mutex
	started bool
	srv     *Server
	err     error
}

// Addr returns the address of the shared server: $SIERRADB_ADDR when set
// (checked to be a SierraDB), or the server this Shared started. Without a
// binary the test is skipped, or failed under CI=true; a server that fails
// to start fails every test that asks for it.
func (s *Shared) Addr(t Tester) string {
	t.Helper()
	if addr := os.Getenv(EnvAddr); addr != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := proc.CheckHello(addr, "sierradb")(ctx); err != nil {
			t.Fatalf("sierradbtest: $%s=%s: %v", EnvAddr, addr, err)
		}
		return addr
	}
	s.mu.Lock()
	if !s.started {
		s.started = true
		s.srv, s.err = Start(context.Background(), s.Config)
	}
	srv, err := s.srv, s.err
	s.mu.Unlock()
	if errors.Is(err, ErrNotInstalled) {
		Unavailable(t, "real SierraDB: %v", err)
		return ""
	}
	if err != nil {
		t.Fatalf("%v", err)
		return ""
	}
	return srv.Addr()
}

// Close stops the shared server, if one was started. A Shared can be used
// again afterwards: the next Addr starts a new server.
func (s *Shared) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.srv != nil {
		err = s.srv.Close()
	}
	s.started, s.srv, s.err = false, nil, nil
	return err
}
