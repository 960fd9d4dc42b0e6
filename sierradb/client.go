package sierradb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// End is the open upper bound of a scan range (sent as "+").
const End = ^uint64(0)

// Config configures a [Client]. The zero value connects to 127.0.0.1:9090.
type Config struct {
	// Addr is the server's host:port. Default: "127.0.0.1:9090". Leave it
	// empty when Cluster is set.
	Addr string
	// Cluster, when set, makes the client work with a SierraDB cluster
	// instead of one server: commands go to the node coordinating their
	// partition, fail over to other nodes, and subscriptions cover every
	// partition once across the nodes. See [ClusterConfig] and
	// docs/cluster.md. Default: nil, one server at Addr.
	Cluster *ClusterConfig
	// PoolSize is the number of pooled command connections.
	// Default: 10 per CPU (go-redis's default).
	PoolSize int
	// DialTimeout bounds each connection attempt. Default: 5s.
	DialTimeout time.Duration
	// ReadTimeout bounds the wait for a reply. It must exceed SierraDB's own
	// 10 s write budget. Default: 15s.
	ReadTimeout time.Duration
	// WriteTimeout bounds the write of a request. Default: 5s.
	WriteTimeout time.Duration
	// Dialer opens connections, for commands and subscriptions alike.
	// Optional: a net.Dialer with the DialTimeout.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// ReconnectMinBackoff and ReconnectMaxBackoff bound the delay between a
	// subscription's reconnection attempts, which doubles with jitter.
	// Defaults: 50ms and 5s.
	ReconnectMinBackoff time.Duration
	ReconnectMaxBackoff time.Duration
	// LiveCheckInterval is how long a subscription may receive nothing,
	// with everything it received acknowledged, before it compares its
	// position with its server's partition heads (EPSEQ). When a
	// partition's head is past the position at two such checks in a row,
	// the server is holding events back, and the subscription
	// resubscribes from its position, without a gap or a duplicate:
	// SierraDB 0.3.1 can hold a partition's last live event until the
	// partition's next write (docs/cluster.md; tested:
	// TestLiveCheckResubscribesPastAHeldTail). Default: 5s; a negative
	// value turns the check off.
	LiveCheckInterval time.Duration
	// Logger receives reconnection and protocol warnings.
	// Default: discard.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Cluster != nil {
		cl := *c.Cluster
		cl.Nodes = append([]string(nil), cl.Nodes...)
		cl.setDefaults()
		c.Cluster = &cl
	}
	if c.Addr == "" && c.Cluster == nil {
		c.Addr = "127.0.0.1:9090"
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 15 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 5 * time.Second
	}
	if c.ReconnectMinBackoff == 0 {
		c.ReconnectMinBackoff = 50 * time.Millisecond
	}
	if c.ReconnectMaxBackoff == 0 {
		c.ReconnectMaxBackoff = 5 * time.Second
	}
	if c.LiveCheckInterval == 0 {
		c.LiveCheckInterval = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Dialer == nil {
		d := &net.Dialer{Timeout: c.DialTimeout, KeepAlive: 15 * time.Second}
		c.Dialer = d.DialContext
	}
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			errs = append(errs, fmt.Errorf("sierradb: Addr %q: %w", c.Addr, err))
		}
	}
	if c.Cluster != nil {
		if c.Addr != "" {
			errs = append(errs, errors.New("sierradb: both Addr and Cluster are set: list the nodes in Cluster.Nodes and leave Addr empty"))
		}
		if err := c.Cluster.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.PoolSize < 0 {
		errs = append(errs, errors.New("sierradb: PoolSize must not be negative"))
	}
	for name, d := range map[string]time.Duration{
		"DialTimeout": c.DialTimeout, "ReadTimeout": c.ReadTimeout, "WriteTimeout": c.WriteTimeout,
		"ReconnectMinBackoff": c.ReconnectMinBackoff, "ReconnectMaxBackoff": c.ReconnectMaxBackoff,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("sierradb: %s must not be negative", name))
		}
	}
	if c.ReconnectMaxBackoff > 0 && c.ReconnectMinBackoff > c.ReconnectMaxBackoff {
		errs = append(errs, errors.New("sierradb: ReconnectMinBackoff exceeds ReconnectMaxBackoff"))
	}
	return errors.Join(errs...)
}

// Client is a SierraDB client. It is safe for concurrent use; create one per
// server and share it. Close it when done: that also closes every
// subscription it opened.
type Client struct {
	cfg Config
	rdb *redis.Client // one server; nil for a cluster
	cl  *cluster      // a cluster; nil for one server

	partitionsOnce sync.Mutex
	partitions     uint16

	mu      sync.Mutex
	closed  bool
	subs    map[*Subscription]struct{}
	closing chan struct{}
}

// New returns a client for the server at cfg.Addr. It does not connect until
// the first command; call [Client.Ping] to check the server.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	c := &Client{
		cfg:     cfg,
		subs:    make(map[*Subscription]struct{}),
		closing: make(chan struct{}),
	}
	if cfg.Cluster != nil {
		c.cl = newCluster(c, *cfg.Cluster)
		if cfg.Cluster.Partitions > 0 {
			c.partitions = uint16(cfg.Cluster.Partitions)
		}
	} else {
		c.rdb = newRedis(cfg, cfg.Addr)
	}
	return c, nil
}

// newRedis returns the connection pool for one server.
func newRedis(cfg Config, addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:         addr,
		Protocol:     3,
		Dialer:       cfg.Dialer,
		PoolSize:     cfg.PoolSize,
		DialTimeout:  cfg.DialTimeout,
		ReadTimeout:  cfg.ReadTimeout,
		WriteTimeout: cfg.WriteTimeout,
		// SierraDB has no CLIENT command: skip SETINFO and maintenance
		// notifications, which it would reject.
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		// go-redis would resend any command after a network error,
		// appends included. Retrying is the caller's decision: see
		// IsRetryable.
		MaxRetries:            -1,
		ContextTimeoutEnabled: true,
	})
}

// Close closes the connection pool and every subscription of this client.
// It is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.closing)
	subs := make([]*Subscription, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	for _, s := range subs {
		s.Close()
	}
	if c.cl != nil {
		return c.cl.close()
	}
	return c.rdb.Close()
}

// Addr returns the server address; for a cluster, the first node's.
func (c *Client) Addr() string {
	if c.cl != nil {
		return c.cl.nodes[0].addr
	}
	return c.cfg.Addr
}

// IsCluster reports whether the client works with a cluster
// ([Config.Cluster]).
func (c *Client) IsCluster() bool { return c.cl != nil }

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// do sends one command that any node answers and converts errors.
func (c *Client) do(ctx context.Context, args ...any) (any, error) {
	if c.isClosed() {
		return nil, ErrClosed
	}
	if c.cl != nil {
		return c.cl.doAny(ctx, args...)
	}
	v, err := c.rdb.Do(ctx, args...).Result()
	if err != nil {
		return nil, convertErr(err)
	}
	return v, nil
}

// Do sends a raw command and returns the reply as go-redis decodes it.
// A null reply is (nil, nil); an error reply is a [*ServerError].
func (c *Client) Do(ctx context.Context, args ...any) (any, error) {
	v, err := c.do(ctx, args...)
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return v, err
}

func convertErr(err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		return err
	}
	if errors.Is(err, redis.ErrClosed) {
		return ErrClosed
	}
	var re redis.Error
	if errors.As(err, &re) {
		return serverError(re.Error())
	}
	return err
}
