package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/cqrs"
)

// DedupStore remembers handled message keys for a while.
type DedupStore interface {
	// Seen reports whether key was marked and has not expired.
	Seen(ctx context.Context, key string) (bool, error)
	// Mark records key for ttl.
	Mark(ctx context.Context, key string, ttl time.Duration) error
}

// DedupConfig configures the middleware made by [NewDedup]. The zero value
// deduplicates in this process's memory.
type DedupConfig struct {
	// Store keeps the keys. Default: an in-memory store for this process
	// (NewMemoryDedupStore); use NewRedisDedupStore to share it between
	// router processes.
	Store DedupStore
	// TTL is how long a key is remembered. Default: 24h.
	TTL time.Duration
	// Key derives the key of a message; "" skips deduplication for it.
	// Default: CommandKey.
	Key func(*message.Message) string
	// ReplyPublisher answers callers waiting on a duplicate (the message
	// names a reply topic) with an idempotent reply (cqrs.IdempotentReply:
	// the entity's version is not known here, so it is -1). Optional. A
	// reply it refuses is returned as a transient *cqrs.ReplyNotSentError:
	// the duplicate is not acked, and is answered when it comes again.
	ReplyPublisher message.Publisher
	// OnDuplicate is called for every duplicate. Optional.
	OnDuplicate func(*message.Message)
	// Logger receives store errors (the message is then handled, not
	// dropped). Default: discard.
	Logger *slog.Logger
}

// Validate reports every problem with the configuration. Zero values are
// valid: they stand for the defaults.
func (c DedupConfig) Validate() error {
	if c.TTL < 0 {
		return errors.New("middleware: DedupConfig.TTL must not be negative")
	}
	return nil
}

func (c *DedupConfig) setDefaults() {
	if c.Store == nil {
		c.Store = NewMemoryDedupStore()
	}
	if c.TTL == 0 {
		c.TTL = 24 * time.Hour
	}
	if c.Key == nil {
		c.Key = CommandKey
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// NewDedup returns a middleware that acks a message that was already
// handled without running the handler again, and answers a waiting caller
// with the idempotent outcome.
//
// A command message that carries causation is keyed on what the entity's
// own causation tracking keys on (entity, causing stream and version,
// command name); any other message on its UUID. The key is marked only
// after the handler succeeded, so a failed attempt is never taken for a
// handled one (tested: TestDedupFailedAttemptIsNotMarked). Two deliveries racing through two processes can both run:
// the executor's stream-based tracking (command ids and causation) then
// writes the events once; this middleware saves the work.
func NewDedup(cfg DedupConfig) (message.HandlerMiddleware, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	d := &dedup{cfg: cfg}
	return d.middleware, nil
}

type dedup struct{ cfg DedupConfig }

// CommandKey is the default key: the causation of a command message if it
// has one, else its UUID.
func CommandKey(msg *message.Message) string {
	md := msg.Metadata
	if src := md.Get(esmill.MetaCausationStreamID); src != "" {
		return "cause:" + md.Get(esmill.MetaCategory) + "-" + md.Get(esmill.MetaEntityID) + ":" + src + "@" +
			md.Get(esmill.MetaCausationStreamVersion) + ":" + md.Get(esmill.MetaCommand)
	}
	return "msg:" + msg.UUID
}

func (d *dedup) middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		key := d.cfg.Key(msg)
		if key == "" {
			return h(msg)
		}
		ctx := msg.Context()
		seen, err := d.cfg.Store.Seen(ctx, key)
		if err != nil {
			d.cfg.Logger.Warn("middleware: dedup store unavailable; handling the message", "error", err)
		}
		if seen {
			if d.cfg.OnDuplicate != nil {
				d.cfg.OnDuplicate(msg)
			}
			// A duplicate whose reply is refused is not acked either: it
			// comes again, and is answered then.
			return nil, d.replyIdempotent(msg)
		}
		out, err := h(msg)
		if err != nil {
			return out, err
		}
		if err := d.cfg.Store.Mark(context.WithoutCancel(ctx), key, d.cfg.TTL); err != nil {
			d.cfg.Logger.Warn("middleware: dedup store unavailable; key not marked", "error", err)
		}
		return out, nil
	}
}

// replyIdempotent answers a duplicate's caller, or returns a transient
// *cqrs.ReplyNotSentError when the publisher refuses the reply.
func (d *dedup) replyIdempotent(msg *message.Message) error {
	topic := msg.Metadata.Get(esmill.MetaReplyTopic)
	if topic == "" || d.cfg.ReplyPublisher == nil {
		return nil
	}
	// The entity's version is not known here: see cqrs.Reply.
	b, _ := json.Marshal(cqrs.IdempotentReply(msg.Metadata.Get(esmill.MetaCategory) + "-" + msg.Metadata.Get(esmill.MetaEntityID)))
	rep := message.NewMessage(msg.UUID+".reply", b)
	rep.Metadata.Set(esmill.MetaReplyTo, msg.UUID)
	rep.Metadata.Set(esmill.MetaCorrelationID, msg.Metadata.Get(esmill.MetaCorrelationID))
	if err := d.cfg.ReplyPublisher.Publish(topic, rep); err != nil {
		d.cfg.Logger.Warn("middleware: idempotent reply not sent; the duplicate goes back to the transport", "uuid", msg.UUID, "topic", topic, "error", err)
		return &cqrs.ReplyNotSentError{MessageUUID: msg.UUID, Topic: topic, Err: err}
	}
	return nil
}

// MemoryDedupStore keeps keys in this process. It is safe for concurrent
// use; expired keys are dropped as new ones come in.
type MemoryDedupStore struct {
	mu    sync.Mutex
	keys  map[string]time.Time
	now   func() time.Time
	marks int
}

// NewMemoryDedupStore returns an empty in-memory store.
func NewMemoryDedupStore() *MemoryDedupStore {
	return &MemoryDedupStore{keys: make(map[string]time.Time), now: time.Now}
}

// Seen implements DedupStore.
func (s *MemoryDedupStore) Seen(_ context.Context, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.keys[key]
	return ok && s.now().Before(exp), nil
}

// Mark implements DedupStore.
func (s *MemoryDedupStore) Mark(_ context.Context, key string, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.keys[key] = now.Add(ttl)
	s.marks++
	if s.marks%1024 == 0 {
		for k, exp := range s.keys {
			if !now.Before(exp) {
				delete(s.keys, k)
			}
		}
	}
	return nil
}

// RedisDedupStore keeps keys in Redis, shared by every process using the
// same prefix. It does not close the client.
type RedisDedupStore struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewRedisDedupStore returns a store on a go-redis client.
func NewRedisDedupStore(rdb redis.UniversalClient, prefix string) *RedisDedupStore {
	return &RedisDedupStore{rdb: rdb, prefix: prefix}
}

// Seen implements DedupStore.
func (s *RedisDedupStore) Seen(ctx context.Context, key string) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.prefix+key).Result()
	return n > 0, err
}

// Mark implements DedupStore.
func (s *RedisDedupStore) Mark(ctx context.Context, key string, ttl time.Duration) error {
	return s.rdb.Set(ctx, s.prefix+key, 1, ttl).Err()
}
