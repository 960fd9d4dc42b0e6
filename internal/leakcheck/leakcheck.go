// Package leakcheck fails a test binary whose tests leave goroutines
// running: every package's TestMain ends with it (directly, or through
// testservice.Main), so a test that forgets to join a writer, close a
// client or stop a subscription fails the run instead of leaking into the
// next test.
//
// It is go.uber.org/goleak with esmill's own rules: nothing is ignored by
// default beyond goleak's (the testing package's goroutines, signal
// handling); a package passes an Ignore option only for a goroutine it
// cannot stop, and says why next to it.
package leakcheck

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Option is a goleak option (IgnoreTopFunction, IgnoreAnyFunction).
type Option = goleak.Option

// IgnoreTopFunction ignores goroutines whose top frame is f.
func IgnoreTopFunction(f string) Option { return goleak.IgnoreTopFunction(f) }

// IgnoreAnyFunction ignores goroutines with f anywhere in their stack.
func IgnoreAnyFunction(f string) Option { return goleak.IgnoreAnyFunction(f) }

// Main runs the package's tests, then checks for leaked goroutines: call
// it from TestMain as os.Exit(leakcheck.Main(m)).
func Main(m *testing.M, opts ...Option) int {
	return After(m.Run(), opts...)
}

// Grace is how long After waits for goroutines to wind down: a Close that
// returned may leave goroutines of a library finishing a sleep or a
// blocking read (watermill-redisstream sleeps 500 ms after a read error,
// for example). A goroutine still running after it is a leak.
const Grace = 10 * time.Second

// After checks for leaked goroutines once the tests have run and their
// services are stopped: it returns code, or 1 when a goroutine that is not
// ignored is still running Grace later, after printing each such
// goroutine's stack.
func After(code int, opts ...Option) int {
	start := time.Now()
	var err error
	for {
		if err = goleak.Find(opts...); err == nil || time.Since(start) > Grace {
			break
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "leakcheck: goroutines still running %s after the tests ended "+
			"(join them, or close what started them, in the test that did):\n%v\n",
			time.Since(start).Round(time.Millisecond), err)
		if code == 0 {
			code = 1
		}
	}
	return code
}
