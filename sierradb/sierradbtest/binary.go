package sierradbtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// Version is the SierraDB release esmill is tested against.
const Version = "0.3.1"

// Environment variables that steer this package.
const (
	// EnvBin names the sierradb binary, overriding the search of [Binary].
	EnvBin = "SIERRADB_BIN"
	// EnvAddr points [Shared] at a running server instead of starting one.
	EnvAddr = "SIERRADB_ADDR"
)

// ErrNotInstalled is returned (wrapped) by [Binary] and [Start] when no
// sierradb binary can be found. It is the one start failure that [RunT]
// turns into a skip.
var ErrNotInstalled = errors.New("sierradb binary not installed")

// Binary finds the sierradb binary: $SIERRADB_BIN, "sierradb" on PATH, then
// ~/.cargo/bin/sierradb. The error wraps [ErrNotInstalled] and says where
// it looked and how to install the binary.
func Binary() (string, error) {
	if bin := os.Getenv(EnvBin); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("%w: $%s=%s: %v", ErrNotInstalled, EnvBin, bin, err)
		}
		return bin, nil
	}
	if bin, err := exec.LookPath("sierradb"); err == nil {
		return bin, nil
	}
	if home, err := os.UserHomeDir(); err == nil {
		name := "sierradb"
		if runtime.GOOS == "windows" {
			name += ".exe"
		}
		bin := filepath.Join(home, ".cargo", "bin", name)
		if _, err := os.Stat(bin); err == nil {
			return bin, nil
		}
	}
	return "", fmt.Errorf("%w: not in $%s, not on PATH, not in ~/.cargo/bin "+
		"(install with: cargo install sierradb-server --version %s --locked)", ErrNotInstalled, EnvBin, Version)
}
