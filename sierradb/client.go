package sierradb

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// End is the open upper bound of a scan range (sent as "+").
const End = ^uint64(0)

// Config configures a [Client]. The zero value connects to 127.0.0.1:9090.
type Config struct {
	// Addr is the server's host:port. Default: "127.0.0.1:9090".
	Addr string
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
	// Logger receives reconnection and protocol warnings.
	// Default: discard.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
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
	rdb *redis.Client

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
	rdb := redis.NewClient(&redis.Options{
		Addr:         cfg.Addr,
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
	return &Client{
		cfg:     cfg,
		rdb:     rdb,
		subs:    make(map[*Subscription]struct{}),
		closing: make(chan struct{}),
	}, nil
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
	return c.rdb.Close()
}

// Addr returns the server address.
func (c *Client) Addr() string { return c.cfg.Addr }

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// do sends one command and converts errors.
func (c *Client) do(ctx context.Context, args ...any) (any, error) {
	if c.isClosed() {
		return nil, ErrClosed
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

func checkNewEvent(ev NewEvent) error {
	if err := ValidateStreamID(ev.StreamID); err != nil {
		return err
	}
	if ev.Name == "" || len(ev.Name) > MaxEventNameLen {
		return fmt.Errorf("sierradb: event name of %d bytes: %w", len(ev.Name), ErrInvalidArgument)
	}
	return nil
}

func appendEventArgs(args []any, ev NewEvent) []any {
	if ev.ID != uuid.Nil {
		args = append(args, "EVENT_ID", ev.ID.String())
	}
	if !ev.ExpectedVersion.IsAny() {
		args = append(args, "EXPECTED_VERSION", ev.ExpectedVersion.String())
	}
	if !ev.Timestamp.IsZero() {
		args = append(args, "TIMESTAMP", strconv.FormatInt(ev.Timestamp.UnixMilli(), 10))
	}
	if len(ev.Payload) > 0 {
		args = append(args, "PAYLOAD", ev.Payload)
	}
	if len(ev.Metadata) > 0 {
		args = append(args, "METADATA", ev.Metadata)
	}
	return args
}

// Append stores one event (EAPPEND). The partition key defaults to
// [StreamPartitionKey] of the stream; see [WithPartitionKey].
func (c *Client) Append(ctx context.Context, ev NewEvent, opts ...AppendOption) (AppendResult, error) {
	if err := checkNewEvent(ev); err != nil {
		return AppendResult{}, err
	}
	o := appendOptions(opts)
	args := make([]any, 0, 16)
	args = append(args, "EAPPEND", ev.StreamID, ev.Name)
	if o.partitionKey != nil {
		args = append(args, "PARTITION_KEY", o.partitionKey.String())
	}
	args = appendEventArgs(args, ev)
	v, err := c.do(ctx, args...)
	if err != nil {
		return AppendResult{}, fmt.Errorf("sierradb: append to %q: %w", ev.StreamID, err)
	}
	m, err := asMap(v)
	if err != nil {
		return AppendResult{}, err
	}
	var r AppendResult
	d := decoder{m: m}
	r.EventID = d.uuid("event_id")
	r.PartitionKey = d.uuid("partition_key")
	r.PartitionID = uint16(d.uint("partition_id"))
	r.PartitionSequence = d.uint("partition_sequence")
	r.StreamVersion = d.uint("stream_version")
	r.Timestamp = d.millis("timestamp")
	return r, d.err
}

// AppendMulti stores events atomically in the one partition of partitionKey
// (EMAPPEND): either every event is stored, or none. The events may belong to
// several streams, and a stream may appear more than once; each expected
// version is checked against the state left by the events before it.
// Every stream written this way is bound to partitionKey.
func (c *Client) AppendMulti(ctx context.Context, partitionKey uuid.UUID, events []NewEvent) (MultiAppendResult, error) {
	if len(events) == 0 {
		return MultiAppendResult{}, fmt.Errorf("sierradb: append of no events: %w", ErrInvalidArgument)
	}
	args := make([]any, 0, 2+len(events)*10)
	args = append(args, "EMAPPEND", partitionKey.String())
	for _, ev := range events {
		if err := checkNewEvent(ev); err != nil {
			return MultiAppendResult{}, err
		}
		args = append(args, ev.StreamID, ev.Name)
		args = appendEventArgs(args, ev)
	}
	v, err := c.do(ctx, args...)
	if err != nil {
		return MultiAppendResult{}, fmt.Errorf("sierradb: multi-append to partition key %s: %w", partitionKey, err)
	}
	m, err := asMap(v)
	if err != nil {
		return MultiAppendResult{}, err
	}
	d := decoder{m: m}
	r := MultiAppendResult{
		PartitionKey:           d.uuid("partition_key"),
		PartitionID:            uint16(d.uint("partition_id")),
		FirstPartitionSequence: d.uint("first_partition_sequence"),
		LastPartitionSequence:  d.uint("last_partition_sequence"),
	}
	list, _ := m["events"].([]any)
	if d.err == nil && len(list) != len(events) {
		d.err = fmt.Errorf("sierradb: multi-append reply has %d events, sent %d", len(list), len(events))
	}
	r.Events = make([]AppendedEvent, 0, len(list))
	for i, item := range list {
		em, err := asMap(item)
		if err != nil {
			return r, err
		}
		ed := decoder{m: em}
		r.Events = append(r.Events, AppendedEvent{
			EventID:           ed.uuid("event_id"),
			StreamID:          ed.str("stream_id"),
			StreamVersion:     ed.uint("stream_version"),
			PartitionSequence: r.FirstPartitionSequence + uint64(i),
			Timestamp:         ed.millis("timestamp"),
		})
		if ed.err != nil {
			return r, ed.err
		}
	}
	return r, d.err
}

// Get reads one event by id (EGET). An absent event gives [ErrNotFound].
func (c *Client) Get(ctx context.Context, eventID uuid.UUID) (Event, error) {
	v, err := c.do(ctx, "EGET", eventID.String())
	if errors.Is(err, redis.Nil) {
		return Event{}, fmt.Errorf("sierradb: event %s: %w", eventID, ErrNotFound)
	}
	if err != nil {
		return Event{}, fmt.Errorf("sierradb: get %s: %w", eventID, err)
	}
	m, err := asMap(v)
	if err != nil {
		return Event{}, err
	}
	return eventFromMap(m)
}

func rangeArgs(from, to uint64) (string, string) {
	end := "+"
	if to != End {
		end = strconv.FormatUint(to, 10)
	}
	return strconv.FormatUint(from, 10), end
}

// Scan reads events of a stream with versions from..to, both inclusive
// (ESCAN). Pass [End] as to for no upper bound. At most one page is
// returned; see [Client.ScanAll] to read to the end.
func (c *Client) Scan(ctx context.Context, streamID string, from, to uint64, opts ...ScanOption) (ScanPage, error) {
	if err := ValidateStreamID(streamID); err != nil {
		return ScanPage{}, err
	}
	o := scanOptions(opts)
	start, end := rangeArgs(from, to)
	args := []any{"ESCAN", streamID, start, end}
	if o.partitionKey != nil {
		args = append(args, "PARTITION_KEY", o.partitionKey.String())
	}
	if o.count > 0 {
		args = append(args, "COUNT", strconv.Itoa(o.count))
	}
	v, err := c.do(ctx, args...)
	if err != nil {
		return ScanPage{}, fmt.Errorf("sierradb: scan %q: %w", streamID, err)
	}
	return scanPage(v)
}

// ScanAll iterates over a stream from version from to its end, one page at
// a time. The iteration stops at the first error, which it yields.
func (c *Client) ScanAll(ctx context.Context, streamID string, from uint64, opts ...ScanOption) iter.Seq2[Event, error] {
	o := scanOptions(opts)
	if o.count <= 0 {
		opts = append(opts, WithCount(1000))
	}
	return func(yield func(Event, error) bool) {
		next := from
		for {
			page, err := c.Scan(ctx, streamID, next, End, opts...)
			if err != nil {
				yield(Event{}, err)
				return
			}
			for _, ev := range page.Events {
				if !yield(ev, nil) {
					return
				}
				next = ev.StreamVersion + 1
			}
			if !page.HasMore || len(page.Events) == 0 {
				return
			}
		}
	}
}

// PartitionScan reads events of a partition with sequences from..to (EPSCAN).
// Pass [End] as to for no upper bound.
//
// SierraDB 0.3.1 treats an explicit upper bound at or below the partition's
// head as exclusive; the embedded server treats it as inclusive. Use [End]
// and stop on the sequence to get the same result from both.
func (c *Client) PartitionScan(ctx context.Context, partition uint16, from, to uint64, opts ...PartitionScanOption) (ScanPage, error) {
	o := partitionScanOptions(opts)
	start, end := rangeArgs(from, to)
	args := []any{"EPSCAN", strconv.Itoa(int(partition)), start, end}
	if o.count > 0 {
		args = append(args, "COUNT", strconv.Itoa(o.count))
	}
	v, err := c.do(ctx, args...)
	if err != nil {
		return ScanPage{}, fmt.Errorf("sierradb: scan partition %d: %w", partition, err)
	}
	return scanPage(v)
}

// StreamVersion returns the latest version of a stream (ESVER), or -1 when
// the stream has no event.
func (c *Client) StreamVersion(ctx context.Context, streamID string, opts ...StreamVersionOption) (int64, error) {
	if err := ValidateStreamID(streamID); err != nil {
		return 0, err
	}
	o := streamVersionOptions(opts)
	args := []any{"ESVER", streamID}
	if o.partitionKey != nil {
		args = append(args, "PARTITION_KEY", o.partitionKey.String())
	}
	v, err := c.do(ctx, args...)
	if errors.Is(err, redis.Nil) {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sierradb: version of %q: %w", streamID, err)
	}
	n, ok := v.(int64)
	if !ok {
		return 0, replyTypeError("ESVER", v)
	}
	return n, nil
}

// PartitionSequence returns the latest sequence of a partition (EPSEQ), or
// -1 when the partition has no event.
func (c *Client) PartitionSequence(ctx context.Context, partition uint16) (int64, error) {
	v, err := c.do(ctx, "EPSEQ", strconv.Itoa(int(partition)))
	if errors.Is(err, redis.Nil) {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sierradb: sequence of partition %d: %w", partition, err)
	}
	n, ok := v.(int64)
	if !ok {
		return 0, replyTypeError("EPSEQ", v)
	}
	return n, nil
}

// PartitionSequences returns the latest sequence of each listed partition
// (-1 when empty), in one round trip.
func (c *Client) PartitionSequences(ctx context.Context, partitions []uint16) (map[uint16]int64, error) {
	if c.isClosed() {
		return nil, ErrClosed
	}
	pipe := c.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(partitions))
	for i, p := range partitions {
		cmds[i] = pipe.Do(ctx, "EPSEQ", strconv.Itoa(int(p)))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("sierradb: partition sequences: %w", convertErr(err))
	}
	out := make(map[uint16]int64, len(partitions))
	for i, p := range partitions {
		v, err := cmds[i].Result()
		switch {
		case errors.Is(err, redis.Nil):
			out[p] = -1
		case err != nil:
			return nil, fmt.Errorf("sierradb: sequence of partition %d: %w", p, convertErr(err))
		default:
			n, ok := v.(int64)
			if !ok {
				return nil, replyTypeError("EPSEQ", v)
			}
			out[p] = n
		}
	}
	return out, nil
}

// Ping checks that the server answers.
func (c *Client) Ping(ctx context.Context) error {
	v, err := c.do(ctx, "PING")
	if err != nil {
		return fmt.Errorf("sierradb: ping: %w", err)
	}
	if s, _ := v.(string); s != "PONG" {
		return replyTypeError("PING", v)
	}
	return nil
}

// Hello returns the server's name, version, peer id and partition count.
func (c *Client) Hello(ctx context.Context) (ServerInfo, error) {
	v, err := c.do(ctx, "HELLO", "3")
	if err != nil {
		return ServerInfo{}, fmt.Errorf("sierradb: hello: %w", err)
	}
	m, err := asMap(v)
	if err != nil {
		return ServerInfo{}, err
	}
	d := decoder{m: m}
	info := ServerInfo{
		Server:        d.str("server"),
		Version:       d.str("version"),
		PeerID:        d.str("peer_id"),
		NumPartitions: uint16(d.uint("num_partitions")),
	}
	return info, d.err
}

// PartitionCount returns the server's partition count, asked once with
// HELLO and then remembered.
func (c *Client) PartitionCount(ctx context.Context) (uint16, error) {
	c.partitionsOnce.Lock()
	defer c.partitionsOnce.Unlock()
	if c.partitions != 0 {
		return c.partitions, nil
	}
	info, err := c.Hello(ctx)
	if err != nil {
		return 0, err
	}
	if info.NumPartitions == 0 {
		return 0, errors.New("sierradb: server reports no partitions")
	}
	c.partitions = info.NumPartitions
	return c.partitions, nil
}

// PartitionOf returns the partition a partition key maps to on this server.
func (c *Client) PartitionOf(ctx context.Context, partitionKey uuid.UUID) (uint16, error) {
	n, err := c.PartitionCount(ctx)
	if err != nil {
		return 0, err
	}
	return PartitionID(partitionKey, n), nil
}
