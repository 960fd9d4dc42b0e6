package testservice

import (
	"context"
	"os"
	"testing"

	"github.com/esmill/esmill/sierradb/sierradbtest"
)

// SierraDBVersion is the server version the tests are proven against.
const SierraDBVersion = sierradbtest.Version

// Environment variables that steer RequireSierraDB.
const (
	// EnvSierraDBAddr points the tests at a running server instead of
	// starting one.
	EnvSierraDBAddr = sierradbtest.EnvAddr
	// EnvSierraDBBin names the binary; default: "sierradb" on PATH, then
	// ~/.cargo/bin/sierradb.
	EnvSierraDBBin = sierradbtest.EnvBin
)

// SierraDBBinary finds the sierradb binary, or returns an error saying where
// it looked.
func SierraDBBinary() (string, error) { return sierradbtest.Binary() }

// RequireSierraDB returns the address of a real SierraDB for t: the one
// named by SIERRADB_ADDR (checked to answer HELLO as SierraDB), or one
// started for this test binary (and stopped by Main). Without a binary, t
// is skipped, or failed under CI=true; a binary that fails to start fails t.
func RequireSierraDB(t testing.TB) string {
	t.Helper()
	if os.Getenv(EnvSierraDBAddr) != "" {
		var external sierradbtest.Shared // only reads and checks the variable
		return external.Addr(t)
	}
	addr, err := shared("sierradb", func() (string, func(), error) {
		s, err := sierradbtest.Start(context.Background(), sierradbtest.Config{})
		if err != nil {
			return "", nil, err
		}
		return s.Addr(), func() { s.Close() }, nil
	})
	if err != nil {
		require(t, "real SierraDB", err)
	}
	return addr
}
