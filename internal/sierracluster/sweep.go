//go:build linux

package sierracluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Sweep removes what crashed earlier runs left behind: network namespaces
// named NamePrefix<pid>-… and temporary directories of the same name whose
// owning process is gone. It kills any process still inside such a
// namespace first. Namespaces of live test processes (parallel test
// binaries) are left alone. Errors are ignored: it is best effort, and New
// calls it before every start.
func Sweep(ctx context.Context) {
	out, err := ip(ctx, "netns", "list")
	if err == nil {
		for _, line := range strings.Split(out, "\n") {
			name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			if stale(name) {
				deleteNetns(ctx, name)
			}
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), NamePrefix+"*"))
	for _, d := range dirs {
		if stale(filepath.Base(d)) {
			os.RemoveAll(d)
		}
	}
}

// stale reports whether name is one of the harness's and its owner died.
func stale(name string) bool {
	rest, ok := strings.CutPrefix(name, NamePrefix)
	if !ok {
		return false
	}
	pidText, _, ok := strings.Cut(rest, "-")
	if !ok {
		return false
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// deleteNetns kills every process in the namespace and deletes it.
func deleteNetns(ctx context.Context, name string) error {
	if _, err := os.Stat(netnsPath(name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if out, err := ip(ctx, "netns", "pids", name); err == nil {
		for _, f := range strings.Fields(out) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	_, err := ip(ctx, "netns", "del", name)
	return err
}
