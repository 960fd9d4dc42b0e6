package testservice

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// SierraDBVersion is the server version the tests are proven against.
const SierraDBVersion = "0.3.1"

// Environment variables that steer RequireSierraDB.
const (
	// EnvSierraDBAddr points the tests at a running server instead of
	// starting one.
	EnvSierraDBAddr = "SIERRADB_ADDR"
	// EnvSierraDBBin names the binary; default: "sierradb" on PATH, then
	// ~/.cargo/bin/sierradb.
	EnvSierraDBBin = "SIERRADB_BIN"
)

// SierraDBBinary finds the sierradb binary, or returns an error saying where
// it looked.
func SierraDBBinary() (string, error) {
	if bin := os.Getenv(EnvSierraDBBin); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvSierraDBBin, bin, err)
		}
		return bin, nil
	}
	if bin, err := exec.LookPath("sierradb"); err == nil {
		return bin, nil
	}
	if home, err := os.UserHomeDir(); err == nil {
		bin := filepath.Join(home, ".cargo", "bin", "sierradb")
		if _, err := os.Stat(bin); err == nil {
			return bin, nil
		}
	}
	return "", fmt.Errorf("no sierradb binary: not in $%s, not on PATH, not in ~/.cargo/bin "+
		"(install with: cargo install sierradb-server --version %s --locked)", EnvSierraDBBin, SierraDBVersion)
}

// SierraDBServer is a real SierraDB started as a child process.
type SierraDBServer struct {
	Addr string
	Proc *Process
}

// StartSierraDB starts a single-node SierraDB on a free loopback port with a
// temporary data directory and waits until it answers PING. Stop it with
// Close.
func StartSierraDB() (*SierraDBServer, error) {
	bin, err := SierraDBBinary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "esmill-sierradb-")
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "sierra.toml")
	// One node, no cluster networking, replication factor 1.
	if err := os.WriteFile(conf, []byte("[network]\ncluster_enabled = false\n[replication]\nfactor = 1\n"), 0o644); err != nil {
		return nil, err
	}
	proc, addr, err := startOnFreePort(dir, bin, func(addr string, _ int) []string {
		return []string{
			"-c", conf, "--dir", filepath.Join(dir, "data"),
			"--client-address", addr, "--cluster-address", "/ip4/127.0.0.1/tcp/0",
		}
	}, []string{"NO_COLOR=1"}, 30*time.Second, pingRESP)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting sierradb: %w", err)
	}
	return &SierraDBServer{Addr: addr, Proc: proc}, nil
}

// Close stops the server and removes its directory.
func (s *SierraDBServer) Close() {
	s.Proc.Stop(10 * time.Second)
	os.RemoveAll(s.Proc.Dir)
}

// pingRESP sends PING as a RESP array and expects +PONG.
func pingRESP(ctx context.Context, addr string) error {
	return pingLine(ctx, addr, "*1\r\n$4\r\nPING\r\n")
}

// RequireSierraDB returns the address of a real SierraDB for t: the one
// named by SIERRADB_ADDR, or one started for this test binary (and stopped
// by Main). Without a binary, t is skipped, or failed under CI=true.
func RequireSierraDB(t testing.TB) string {
	t.Helper()
	if addr := os.Getenv(EnvSierraDBAddr); addr != "" {
		return addr
	}
	addr, err := shared("sierradb", func() (string, func(), error) {
		s, err := StartSierraDB()
		if err != nil {
			return "", nil, err
		}
		return s.Addr, s.Close, nil
	})
	if err != nil {
		unavailable(t, "real SierraDB: %v", err)
	}
	return addr
}
