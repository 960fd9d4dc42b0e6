package redisbus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// DefaultReloadInterval is the slot-map reload interval NewClusterClient
// sets when the options leave it unset.
const DefaultReloadInterval = 2 * time.Second

// NewClusterClient returns a go-redis ClusterClient for opts that finds a
// promoted replica soon after a failover: ClusterStateReloadInterval
// defaults to DefaultReloadInterval instead of 60 s, and a connection
// error of any command (or pipeline, or dial) reloads the slot map at
// once (TestClusterClientReloadsAfterFailover). opts is not modified.
func NewClusterClient(opts *redis.ClusterOptions) *redis.ClusterClient {
	o := *opts
	if o.ClusterStateReloadInterval == 0 {
		o.ClusterStateReloadInterval = DefaultReloadInterval
	}
	rdb := redis.NewClusterClient(&o)
	rdb.AddHook(reloadHook{rdb: rdb})
	return rdb
}

// reloadHook asks the cluster client to reload its slot map after a
// connection error.
type reloadHook struct{ rdb *redis.ClusterClient }

func (h reloadHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil {
			h.rdb.ReloadState(context.WithoutCancel(ctx))
		}
		return c, err
	}
}

func (h reloadHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(ctx, err)
		return err
	}
}

func (h reloadHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(ctx, err)
		return err
	}
}

func (h reloadHook) check(ctx context.Context, err error) {
	if isConnErr(err) {
		h.rdb.ReloadState(context.WithoutCancel(ctx))
	}
}

// isConnErr reports an error of the connection, not a reply of the
// server.
func isConnErr(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		// A reply: CLUSTERDOWN and TRYAGAIN describe a cluster in
		// transition, worth a fresh map too.
		msg := re.Error()
		return strings.HasPrefix(msg, "CLUSTERDOWN") || strings.HasPrefix(msg, "TRYAGAIN")
	}
	return true
}

// DurableConfig configures a [DurablePublisher].
type DurableConfig struct {
	// Client is the Redis the wrapped publisher writes to: a
	// *redis.ClusterClient (WAIT goes to the master of each topic's slot)
	// or a *redis.Client. Required.
	Client redis.UniversalClient
	// Replicas is how many replicas must have a message before Publish
	// returns. Default: 1.
	Replicas int
	// Timeout bounds the wait for the replicas. Default: 2s.
	Timeout time.Duration
}

// Validate reports every problem with the configuration.
func (c DurableConfig) Validate() error {
	var errs []error
	switch c.Client.(type) {
	case *redis.ClusterClient, *redis.Client:
	case nil:
		errs = append(errs, errors.New("redisbus: DurableConfig.Client is required"))
	default:
		errs = append(errs, fmt.Errorf("redisbus: DurableConfig.Client is a %T: give a *redis.ClusterClient or a *redis.Client", c.Client))
	}
	if c.Replicas < 0 {
		errs = append(errs, errors.New("redisbus: DurableConfig.Replicas must not be negative"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("redisbus: DurableConfig.Timeout must not be negative"))
	}
	return errors.Join(errs...)
}

func (c *DurableConfig) setDefaults() {
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
}

// DurablePublisher wraps a publisher whose topics are Redis keys (as
// watermill-redisstream's are: one stream per topic) so that Publish
// returns only once the replicas of the topic's master hold the messages:
// after the wrapped Publish, it writes a marker key in the topic's slot and
// sends WAIT on the same connection, which covers everything the master
// took before the marker. A message whose Publish returned nil therefore
// survives the SIGKILL of that master (TestDurablePublisherSurvivesFailover).
// It does not close the client.
type DurablePublisher struct {
	pub message.Publisher
	cfg DurableConfig
}

// NewDurablePublisher wraps pub.
func NewDurablePublisher(pub message.Publisher, cfg DurableConfig) (*DurablePublisher, error) {
	if pub == nil {
		return nil, errors.New("redisbus: NewDurablePublisher needs a publisher")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return &DurablePublisher{pub: pub, cfg: cfg}, nil
}

// NotReplicatedError reports messages that the topic's master took but
// fewer replicas than required acknowledged in time. They may still be
// delivered; if the master dies now they may be lost. Publishing again is
// safe for consumers that deduplicate on the message UUID (esmill's
// command router does).
type NotReplicatedError struct {
	Topic         string
	Replicas      int
	Acknowledged  int64
	Timeout       time.Duration
	MasterAddress string
}

func (e *NotReplicatedError) Error() string {
	return fmt.Sprintf("redisbus: topic %q: %d of %d replicas of master %s acknowledged within %s; publish again (consumers deduplicate on the message UUID) or check the replicas",
		e.Topic, e.Acknowledged, e.Replicas, e.MasterAddress, e.Timeout)
}

// Publish publishes msgs with the wrapped publisher, then waits for the
// replicas. The wait is bounded by DurableConfig.Timeout, and by the first
// message's context when the client honours contexts (go-redis's
// ContextTimeoutEnabled; without it the wait may outlast the context until
// the client's own timeouts end it) (tested: TestDurableWaitIsBounded).
func (p *DurablePublisher) Publish(topic string, msgs ...*message.Message) error {
	if err := p.pub.Publish(topic, msgs...); err != nil {
		return err
	}
	ctx := context.Background()
	if len(msgs) > 0 {
		ctx = msgs[0].Context()
	}
	return p.Wait(ctx, topic)
}

// Wait returns once the replicas of the master of key's slot have every
// write that master took so far.
func (p *DurablePublisher) Wait(ctx context.Context, key string) error {
	var node *redis.Client
	switch c := p.cfg.Client.(type) {
	case *redis.ClusterClient:
		m, err := c.MasterForKey(ctx, key)
		if err != nil {
			return fmt.Errorf("redisbus: master of topic %q: %w", key, err)
		}
		node = m
	case *redis.Client:
		node = c
	}
	pipe := node.Pipeline()
	pipe.Set(ctx, markerKey(key), "1", time.Minute)
	wait := pipe.Do(ctx, "WAIT", p.cfg.Replicas, p.cfg.Timeout.Milliseconds())
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redisbus: wait for the replicas of topic %q: %w", key, err)
	}
	n, err := wait.Int64()
	if err != nil {
		return fmt.Errorf("redisbus: WAIT on the master of topic %q: %w", key, err)
	}
	if n < int64(p.cfg.Replicas) {
		return &NotReplicatedError{Topic: key, Replicas: p.cfg.Replicas, Acknowledged: n, Timeout: p.cfg.Timeout, MasterAddress: node.Options().Addr}
	}
	return nil
}

// Close closes the wrapped publisher.
func (p *DurablePublisher) Close() error { return p.pub.Close() }

// markerKey is a key in the same slot as key: key itself carries the hash
// tag if it has one; otherwise key becomes the tag.
func markerKey(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key + ":esmill-wait"
		}
	}
	return "{" + key + "}:esmill-wait"
}
