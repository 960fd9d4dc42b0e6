package middleware

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/internal/backoff"
)

// ErrRateLimited is matched by [*RateLimitedError].
var ErrRateLimited = errors.New("middleware: rate limited")

// RateLimitedError rejects a message whose key has no token left.
type RateLimitedError struct {
	Key        string
	RetryAfter time.Duration
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("middleware: %q is rate limited; retry after %s", e.Key, e.RetryAfter)
}

func (e *RateLimitedError) Is(target error) bool { return target == ErrRateLimited }

// ErrorClass is [esmill.Transient]: a token comes later.
func (e *RateLimitedError) ErrorClass() esmill.Class { return esmill.Transient }

// Limiter hands out tokens per key.
type Limiter interface {
	// Allow takes a token for key if one is available now, and returns 0;
	// otherwise it takes none and says how long until one is.
	Allow(ctx context.Context, key string) (retryAfter time.Duration, err error)
}

// RateLimitConfig configures the middleware made by [NewRateLimit].
type RateLimitConfig struct {
	// Limiter hands out the tokens. Required: NewLocalLimiter for one
	// process, NewRedisLimiter for a limit shared by processes.
	Limiter Limiter
	// Key derives the key of a message; "" means unlimited.
	// Default: EntityKey.
	Key func(*message.Message) string
	// Wait waits for a token instead of rejecting.
	Wait bool
}

// Validate reports every problem with the configuration.
func (c RateLimitConfig) Validate() error {
	if c.Limiter == nil {
		return errors.New("middleware: RateLimitConfig.Limiter is required: NewLocalLimiter for one process, NewRedisLimiter for a limit shared through Redis")
	}
	return nil
}

func (c *RateLimitConfig) setDefaults() {
	if c.Key == nil {
		c.Key = EntityKey
	}
}

// NewRateLimit returns a middleware that limits messages per key with a
// token bucket. In reject mode a message without a token fails with a
// [*RateLimitedError] (transient: a Retry middleware retries it after a
// backoff); in wait mode the handler waits for a token, as long as the
// message's context allows.
func NewRateLimit(cfg RateLimitConfig) (message.HandlerMiddleware, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	r := &rateLimit{cfg: cfg}
	return r.middleware, nil
}

type rateLimit struct{ cfg RateLimitConfig }

// EntityKey keys a command message on its entity.
func EntityKey(msg *message.Message) string {
	return msg.Metadata.Get(esmill.MetaCategory) + "-" + msg.Metadata.Get(esmill.MetaEntityID)
}

// CommandNameKey keys a command message on its command name.
func CommandNameKey(msg *message.Message) string {
	return msg.Metadata.Get(esmill.MetaCategory) + "." + msg.Metadata.Get(esmill.MetaCommand)
}

// MetadataKey keys a message on a metadata field, such as a tenant.
func MetadataKey(field string) func(*message.Message) string {
	return func(msg *message.Message) string { return msg.Metadata.Get(field) }
}

func (r *rateLimit) middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		key := r.cfg.Key(msg)
		if key == "" {
			return h(msg)
		}
		ctx := msg.Context()
		for {
			wait, err := r.cfg.Limiter.Allow(ctx, key)
			if err != nil {
				return nil, fmt.Errorf("middleware: rate limiter: %w", err)
			}
			if wait == 0 {
				return h(msg)
			}
			if !r.cfg.Wait {
				return nil, &RateLimitedError{Key: key, RetryAfter: wait}
			}
			if err := backoff.Sleep(ctx, wait); err != nil {
				return nil, err
			}
		}
	}
}

// LocalLimiter is a token bucket per key in this process
// (golang.org/x/time/rate). Buckets unused for a while are dropped.
type LocalLimiter struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*bucket
	calls   int
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

// NewLocalLimiter allows limit events per second per key, with bursts of
// burst.
func NewLocalLimiter(limit rate.Limit, burst int) *LocalLimiter {
	return &LocalLimiter{limit: limit, burst: burst, buckets: make(map[string]*bucket)}
}

// Allow implements Limiter.
func (l *LocalLimiter) Allow(_ context.Context, key string) (time.Duration, error) {
	now := time.Now()
	l.mu.Lock()
	b := l.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[key] = b
	}
	b.used = now
	l.calls++
	if l.calls%4096 == 0 {
		for k, old := range l.buckets {
			if now.Sub(old.used) > time.Hour {
				delete(l.buckets, k)
			}
		}
	}
	l.mu.Unlock()
	res := b.lim.ReserveN(now, 1)
	if !res.OK() {
		return time.Hour, nil
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, nil
	}
	return 0, nil
}

// RedisLimiter is a token bucket per key in Redis (GCRA, through
// redis_rate), shared by every process using the same prefix. It does not
// close the client.
type RedisLimiter struct {
	lim    *redis_rate.Limiter
	prefix string
	limit  redis_rate.Limit
}

// NewRedisLimiter returns a limiter on a go-redis client.
func NewRedisLimiter(rdb redis.UniversalClient, prefix string, limit redis_rate.Limit) *RedisLimiter {
	return &RedisLimiter{lim: redis_rate.NewLimiter(rdb), prefix: prefix, limit: limit}
}

// Allow implements Limiter.
func (l *RedisLimiter) Allow(ctx context.Context, key string) (time.Duration, error) {
	res, err := l.lim.Allow(ctx, l.prefix+key, l.limit)
	if err != nil {
		return 0, err
	}
	if res.Allowed > 0 {
		return 0, nil
	}
	return max(res.RetryAfter, time.Millisecond), nil
}
