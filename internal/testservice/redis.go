package testservice

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
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
	var lastErr error
	for range 3 {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		proc, err := StartProcess(dir, bin, []string{
			"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
			"--dir", dir, "--protected-mode", "yes",
		}, nil)
		if err != nil {
			return nil, err
		}
		if err := proc.WaitReady(15*time.Second, func(ctx context.Context) error { return pingRedis(ctx, addr) }); err != nil {
			proc.Kill()
			lastErr = err
			continue
		}
		return &RedisServer{Addr: addr, Proc: proc}, nil
	}
	os.RemoveAll(dir)
	return nil, fmt.Errorf("starting redis-server: %w", lastErr)
}

// Close stops the server and removes its directory.
func (s *RedisServer) Close() {
	s.Proc.Stop(5 * time.Second)
	os.RemoveAll(s.Proc.Dir)
}

func pingRedis(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
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
