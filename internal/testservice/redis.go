package testservice

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// EnvRedisAddr points the tests at a running Redis instead of starting one.
const EnvRedisAddr = "REDIS_ADDR"

// RedisServer is a redis-server started as a child process.
type RedisServer struct {
	Addr string
	Proc *Process
}

// StartRedis starts redis-server on a free loopback port, without
// persistence, and waits until it answers PING.
func StartRedis() (*RedisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("no redis-server on PATH (install Debian's redis-server): %w", err)
	}
	dir, err := os.MkdirTemp("", "esmill-redis-")
	if err != nil {
		return nil, err
	}
	proc, addr, err := startOnFreePort(dir, bin, func(_ string, port int) []string {
		return []string{
			"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
			"--dir", dir, "--protected-mode", "yes",
		}
	}, nil, 15*time.Second, pingRedis)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	return &RedisServer{Addr: addr, Proc: proc}, nil
}

// Close stops the server and removes its directory.
func (s *RedisServer) Close() {
	s.Proc.Stop(5 * time.Second)
	os.RemoveAll(s.Proc.Dir)
}

func pingRedis(ctx context.Context, addr string) error { return pingLine(ctx, addr, "PING\r\n") }

// RequireRedis returns the address of a Redis for t: REDIS_ADDR, or one
// started for this test binary (stopped by Main). Without redis-server, t is
// skipped, or failed under CI=true.
func RequireRedis(t testing.TB) string {
	t.Helper()
	if addr := os.Getenv(EnvRedisAddr); addr != "" {
		return addr
	}
	addr, err := shared("redis", func() (string, func(), error) {
		s, err := StartRedis()
		if err != nil {
			return "", nil, err
		}
		return s.Addr, s.Close, nil
	})
	if err != nil {
		unavailable(t, "Redis: %v", err)
	}
	return addr
}
