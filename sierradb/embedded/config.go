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

	// CacheBytes bounds the block cache through which directory mode reads
	// payloads and metadata from the logs (memory holds only an index).
	// Default: 64 MiB. Ignored in memory mode.
	CacheBytes int64
	// Salvage opens a directory whose logs are damaged by keeping what
	// precedes the damage in each damaged log: the rest is moved to a
	// <log>.damaged-<offset> file and described in [Server.Recovery].
	// Default: false, [Start] refuses such a directory with a
	// [*CorruptLogError].
	Salvage bool

	// MaxConnections caps the open client connections. A connection beyond
	// it gets a TRYAGAIN error and is closed. Default: 1024.
	MaxConnections int
	// MaxSubscriptionsPerConn caps the subscriptions of one connection;
	// ESUB and EPSUB beyond it fail with INVALIDARG. Default: 256.
	MaxSubscriptionsPerConn int
	// MaxFrameBytes bounds the memory one request takes once decoded (each
	// argument counts about 100 bytes plus its length). A bigger request
	// closes its connection. Default: 64 MiB.
	MaxFrameBytes int
	// MaxTotalFrameBytes bounds the decoded memory of the requests of all
	// connections together; each connection's first 16 KiB are not counted,
	// so small commands always pass. A request that finds it exhausted
	// closes its connection. Default: 128 MiB; at least MaxFrameBytes.
	MaxTotalFrameBytes int64
	// FrameTimeout is how long a client may take to send a whole request
	// once its first byte has arrived; a connection idle between requests
	// is never timed out (tested: TestFrameTimeout). Default: 30 s.
	FrameTimeout time.Duration
	// IdleTimeout closes a connection that sends nothing for this long
	// between requests (subscribers included: they EACK or PING). Default:
	// 0, no idle limit, like SierraDB.
	IdleTimeout time.Duration
}

// Defaults of the zero Config fields.
const (
	DefaultCacheBytes              = 64 << 20
	DefaultMaxConnections          = 1024
	DefaultMaxSubscriptionsPerConn = 256
	DefaultMaxFrameBytes           = 32 << 20
	DefaultMaxTotalFrameBytes      = 64 << 20
	DefaultFrameTimeout            = 30 * time.Second
)

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
	if c.CacheBytes == 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.MaxSubscriptionsPerConn == 0 {
		c.MaxSubscriptionsPerConn = DefaultMaxSubscriptionsPerConn
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if c.MaxTotalFrameBytes == 0 {
		c.MaxTotalFrameBytes = max(DefaultMaxTotalFrameBytes, int64(c.MaxFrameBytes))
	}
	if c.FrameTimeout == 0 {
		c.FrameTimeout = DefaultFrameTimeout
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
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"CacheBytes", c.CacheBytes},
		{"MaxConnections", int64(c.MaxConnections)},
		{"MaxSubscriptionsPerConn", int64(c.MaxSubscriptionsPerConn)},
		{"MaxFrameBytes", int64(c.MaxFrameBytes)},
		{"MaxTotalFrameBytes", c.MaxTotalFrameBytes},
		{"FrameTimeout", int64(c.FrameTimeout)},
		{"IdleTimeout", int64(c.IdleTimeout)},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("embedded: %s is negative (%d); use 0 for the default", f.name, f.v))
		}
	}
	if c.MaxTotalFrameBytes > 0 && int64(c.MaxFrameBytes) > c.MaxTotalFrameBytes {
		errs = append(errs, fmt.Errorf("embedded: MaxFrameBytes (%d) is above MaxTotalFrameBytes (%d): no request that large could ever pass",
			c.MaxFrameBytes, c.MaxTotalFrameBytes))
	}
	if c.MaxTotalFrameBytes > 0 && c.MaxFrameBytes == 0 && c.MaxTotalFrameBytes < DefaultMaxFrameBytes {
		errs = append(errs, fmt.Errorf("embedded: MaxTotalFrameBytes (%d) is below the default MaxFrameBytes (%d); set MaxFrameBytes too",
			c.MaxTotalFrameBytes, DefaultMaxFrameBytes))
	}
	return errors.Join(errs...)
}
