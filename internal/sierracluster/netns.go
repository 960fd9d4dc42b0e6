//go:build linux

package sierracluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ipTimeout bounds every call of the ip tool.
const ipTimeout = 10 * time.Second

// ip runs the ip tool (iproute2) with args and returns its combined output.
func ip(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, ipTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// netnsPath is where "ip netns add" bind-mounts a named namespace.
func netnsPath(name string) string { return "/run/netns/" + name }

// checkPrivileges reports why namespaces cannot be made here, or nil.
func checkPrivileges() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root (ip netns add); run the cluster tests as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("no ip tool on PATH (install Debian's iproute2): %w", err)
	}
	return nil
}

// inNetns runs f on an OS thread that has joined the named network
// namespace. Sockets created by f belong to that namespace for their whole
// life, whichever thread later uses them, so this is how the test process
// reaches addresses that exist only inside the cluster's namespaces without
// giving the root namespace any interface of the cluster. If the thread
// cannot be moved back, it is left locked and so discarded by the Go
// runtime when the goroutine ends.
func inNetns(name string, f func() error) error {
	target, err := os.Open(netnsPath(name))
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", name, err)
	}
	defer target.Close()

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open the thread's network namespace: %w", err)
			return
		}
		defer self.Close()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", name, err)
			return
		}
		ferr := f()
		if err := setns(self); err == nil && !sameNetns(self) {
			err = errors.New("thread still in another namespace after setns")
			errc <- errors.Join(ferr, err)
			return
		} else if err != nil {
			// Keep the thread locked: it dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("leave network namespace %s: %w", name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func setns(f *os.File) error { return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET) }

// dialIn opens a TCP connection from inside the named namespace.
func dialIn(ctx context.Context, netns, addr string) (net.Conn, error) {
	var conn net.Conn
	err := inNetns(netns, func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		conn = c
		return err
	})
	return conn, err
}

// sameNetns reports whether the calling thread is in the namespace f
// refers to.
func sameNetns(f *os.File) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil {
		return false
	}
	if unix.Stat(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), &b) != nil {
		return false
	}
	return a.Ino == b.Ino && a.Dev == b.Dev
}
