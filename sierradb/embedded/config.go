package embedded

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/esmill/esmill/sierradb"
)

// Config configures a [Server]. The zero value is valid: an in-memory server
// with 32 partitions and strict versioning on a free loopback port.
type Config struct {
	// Addr is the TCP address to listen on.
	// Default: "127.0.0.1:0" (a free port; see [Server.Addr]).
	Addr string
	// Dir is the data directory. Empty keeps everything in memory.
	// Otherwise every acknowledged append is fsynced to an append-only log
	// per partition in Dir and survives a crash.
	Dir string
	// PartitionCount is the number of partitions. A directory remembers its
	// count and refuses to open with another one.
	// Default: 32 ([sierradb.DefaultPartitionCount]).
	PartitionCount uint16
	// RelaxedVersioning turns off strict versioning, so that EXPECTED_VERSION
	// any and exists (and a missing EXPECTED_VERSION) are accepted.
	// Default: false, strict, like SierraDB 0.3.1.
	RelaxedVersioning bool
	// Logger receives the server's log. Default: discard.
	Logger *slog.Logger
	// Now is the clock used for event timestamps and generated event ids.
	// Default: time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.PartitionCount == 0 {
		c.PartitionCount = sierradb.DefaultPartitionCount
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem of c, joined with errors.Join. Zero fields
// are valid: they take their defaults.
func (c Config) Validate() error {
	var errs []error
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			errs = append(errs, fmt.Errorf("embedded: invalid Addr %q: %w", c.Addr, err))
		}
	}
	if c.Dir != "" {
		fi, err := os.Stat(c.Dir)
		switch {
		case errors.Is(err, os.ErrNotExist):
			// Start creates it.
		case err != nil:
			errs = append(errs, fmt.Errorf("embedded: Dir: %w", err))
		case !fi.IsDir():
			errs = append(errs, fmt.Errorf("embedded: Dir %q is not a directory", c.Dir))
		}
	}
	return errors.Join(errs...)
}
