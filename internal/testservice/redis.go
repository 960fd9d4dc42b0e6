package testservice

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/esmill/esmill/internal/proc"
)

// EnvRedisAddr points the tests at a running Redis instead of starting one.
const EnvRedisAddr = "REDIS_ADDR"

// RedisServer is a redis-server started as a child process.
type RedisServer struct {
	Addr string
	Proc *Process
}

// StartRedis starts redis-server on a free loopback port, without
// persistence, and waits until the server on that port is this one: it
// answers HELLO as Redis and INFO gives this process's id.
func StartRedis() (*RedisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("%w: no redis-server on PATH (install Debian's redis-server): %v", errNotInstalled, err)
	}
	dir, err := os.MkdirTemp("", "esmill-redis-")
	if err != nil {
		return nil, err
	}
	p, addr, err := startOnFreePort(dir, bin, func(_ string, port int) []string {
		return []string{
			"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
			"--dir", dir, "--protected-mode", "yes",
		}
	}, nil, 15*time.Second, ownRedis)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	return &RedisServer{Addr: addr, Proc: p}, nil
}

// ownRedis checks that the server at addr is Redis and is process p.
func ownRedis(ctx context.Context, addr string, p *Process) error {
	if err := proc.CheckHello(addr, "redis")(ctx); err != nil {
		return err
	}
	info, err := proc.Do(ctx, addr, "INFO", "server")
	if err != nil {
		return err
	}
	want := "process_id:" + strconv.Itoa(p.Pid())
	for line := range strings.SplitSeq(info, "\n") {
		if strings.TrimSpace(line) == want {
			return nil
		}
	}
	return fmt.Errorf("the Redis at %s is not the one started here (pid %d)", addr, p.Pid())
}

// Close stops the server and removes its directory.
func (s *RedisServer) Close() {
	s.Proc.Stop(5 * time.Second)
	os.RemoveAll(s.Proc.Dir)
}

// RequireRedis returns the address of a Redis for t: REDIS_ADDR (checked to
// answer HELLO as Redis), or one started for this test binary (stopped by
// Main). Without redis-server, t is skipped, or failed under CI=true; a
// redis-server that fails to start fails t.
func RequireRedis(t testing.TB) string {
	t.Helper()
	if addr := os.Getenv(EnvRedisAddr); addr != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := proc.CheckHello(addr, "redis")(ctx); err != nil {
			t.Fatalf("$%s=%s: %v", EnvRedisAddr, addr, err)
		}
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
		require(t, "Redis", err)
	}
	return addr
}
