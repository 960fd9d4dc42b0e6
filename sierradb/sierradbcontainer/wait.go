package sierradbcontainer

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/esmill/esmill/sierradb"
)

// helloStrategy waits until the server answers HELLO as SierraDB on the
// published port: a container whose port accepts connections (Docker's
// proxy accepts them before the server listens) is not enough. A container
// that exits first fails the wait at once, with its output.
type helloStrategy struct {
	timeout time.Duration
}

func (s *helloStrategy) Timeout() *time.Duration { return &s.timeout }

func (s *helloStrategy) WaitUntilReady(ctx context.Context, target wait.StrategyTarget) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		state, err := target.State(ctx)
		if err == nil && !state.Running {
			return fmt.Errorf("the container stopped (%s, exit code %d) before SierraDB answered; output:\n%s",
				state.Status, state.ExitCode, logTail(ctx, target))
		}
		if last = hello(ctx, target); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("SierraDB did not answer HELLO within %s (last: %v); output:\n%s",
				s.timeout, last, logTail(context.Background(), target))
		case <-tick.C:
		}
	}
}

func hello(ctx context.Context, target wait.StrategyTarget) error {
	host, err := target.Host(ctx)
	if err != nil {
		return err
	}
	port, err := target.MappedPort(ctx, Port)
	if err != nil {
		return err
	}
	c, err := sierradb.New(sierradb.Config{Addr: net.JoinHostPort(host, port.Port()), DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	if err != nil {
		return err
	}
	defer c.Close()
	hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := c.Hello(hctx)
	if err != nil {
		return err
	}
	if info.Server != "sierradb" {
		return fmt.Errorf("the server on %s:%s is %q, not sierradb", host, port.Port(), info.Server)
	}
	return nil
}

// logTail returns the end of the container's output.
func logTail(ctx context.Context, target wait.StrategyTarget) string {
	r, err := target.Logs(ctx)
	if err != nil {
		return fmt.Sprintf("(no output: %v)", err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	if len(b) > 4000 {
		b = append([]byte("…"), b[len(b)-4000:]...)
	}
	return string(b)
}
