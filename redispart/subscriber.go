package redispart

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/internal/backoff"
)

// ErrClosed: the subscriber was closed. It matches esmill.ErrClosed.
var ErrClosed error = &esmill.ClosedError{Text: "redispart: subscriber closed"}

// SubscriberConfig configures a [Subscriber].
type SubscriberConfig struct {
	// Client is the Redis client (a *redis.Client or a
	// *redis.ClusterClient). Required. The subscriber does not close it.
	// Each subscription holds one of its connections while it waits for
	// new entries: give it a PoolSize of at least the number of topics
	// the process subscribes to, plus what else it uses.
	Client redis.UniversalClient
	// Group names the position: each group keeps its own position per
	// topic, and every group sees every entry. Required; 1 to 200 bytes.
	Group string
	// Unmarshaller reads entries. Default: watermill-redisstream's
	// DefaultMarshallerUnmarshaller, which reads what its publisher
	// writes.
	Unmarshaller redisstream.Unmarshaller
	// BlockTime is how long one read waits for new entries; it also
	// bounds how long a subscription takes to stop once its context ends
	// (go-redis does not interrupt a blocked read). Default: 100ms.
	BlockTime time.Duration
	// ReadAhead is how many entries one read fetches. They are held in
	// memory only: the position in Redis moves on acks. Default: 32.
	ReadAhead int
	// MaxInFlight is how many messages a subscription hands over before
	// the first of them is acked. Default: 1, one at a time in stream
	// order. Above 1 it needs OrderKey: messages of one key still go one
	// at a time in stream order, messages of different keys are handled
	// side by side (the Watermill router runs each message it receives
	// in its own goroutine). The position moves only over a run of acked
	// entries with nothing unacked before them, and is recorded once for
	// all the acks that arrived together; an entry acked after an earlier
	// one that was not is delivered again after a takeover or a crash.
	MaxInFlight int
	// OrderKey names the key a message is ordered by when MaxInFlight is
	// above 1: messages of one key are never in flight together
	// (tested: TestWindowKeepsEachKeyInOrder). For
	// the command topics of a cqrs.CommandRouter, give cqrs.OrderKey
	// (commands of one entity in order, entities side by side).
	OrderKey func(*message.Message) string
	// NackResendSleep is the wait before a nacked message is delivered
	// again (messages of other keys go on meanwhile). Default: 0.
	NackResendSleep time.Duration
	// AckTimeout bounds the recording of one ack in Redis (it is retried
	// within the bound, then the subscription stops and its successor
	// delivers the message again). Default: 10s.
	AckTimeout time.Duration
	// KeepAcked keeps entries every group has acked. By default they are
	// trimmed (XTRIM MINID, approximate) as positions move. A group that
	// subscribed once holds trimming back until it acks, or until
	// [DeleteGroup] removes it.
	KeepAcked bool
	// Logger receives takeovers (Info) and failures (Warn, Error).
	// Default: discard.
	Logger *slog.Logger
}

// Validate reports every problem with the configuration.
func (c SubscriberConfig) Validate() error {
	var errs []error
	if c.Client == nil {
		errs = append(errs, errors.New("redispart: SubscriberConfig.Client is required"))
	}
	if c.Group == "" || len(c.Group) > 200 {
		errs = append(errs, fmt.Errorf("redispart: SubscriberConfig.Group %q must be 1 to 200 bytes", c.Group))
	}
	if c.BlockTime < 0 || c.NackResendSleep < 0 || c.AckTimeout < 0 {
		errs = append(errs, errors.New("redispart: BlockTime, NackResendSleep and AckTimeout must not be negative"))
	}
	if c.BlockTime > 0 && c.BlockTime < time.Millisecond {
		errs = append(errs, errors.New("redispart: BlockTime must be at least 1ms (Redis counts it in milliseconds)"))
	}
	if c.ReadAhead < 0 {
		errs = append(errs, errors.New("redispart: ReadAhead must not be negative"))
	}
	if c.MaxInFlight < 0 {
		errs = append(errs, errors.New("redispart: MaxInFlight must not be negative"))
	}
	if c.MaxInFlight > 1 && c.OrderKey == nil {
		errs = append(errs, fmt.Errorf("redispart: MaxInFlight %d needs OrderKey, the key that keeps related messages in order "+
			"(cqrs.OrderKey for command topics); or leave MaxInFlight at 1", c.MaxInFlight))
	}
	return errors.Join(errs...)
}

func (c *SubscriberConfig) setDefaults() {
	if c.Unmarshaller == nil {
		c.Unmarshaller = redisstream.DefaultMarshallerUnmarshaller{}
	}
	if c.BlockTime == 0 {
		c.BlockTime = 100 * time.Millisecond
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 1
	}
	if c.ReadAhead == 0 {
		c.ReadAhead = 32
	}
	if c.ReadAhead < c.MaxInFlight {
		c.ReadAhead = c.MaxInFlight
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Subscriber reads Redis Streams by position. It implements
// message.Subscriber. Create it with [NewSubscriber]; Close it to end
// every subscription.
type Subscriber struct {
	cfg SubscriberConfig

	// base ends every subscription when the subscriber closes.
	base     context.Context
	stopBase context.CancelFunc

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// NewSubscriber returns a subscriber.
func NewSubscriber(cfg SubscriberConfig) (*Subscriber, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	base, stop := context.WithCancel(context.Background())
	return &Subscriber{cfg: cfg, base: base, stopBase: stop}, nil
}

// Close ends every subscription and waits for them; it does not close the
// client. It is idempotent.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	s.stopBase()
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Subscribe takes the group's position on topic over and delivers the
// entries after it, in order, one at a time: the next only once the
// previous is acked (with MaxInFlight above 1: one at a time per
// OrderKey). An ack moves the position, checked against the
// subscription's generation: if a newer subscription of the group has
// taken the topic over since, the ack is refused and this subscription
// ends (its channel closes); the newer one delivers the unacked entry
// again. The channel also closes when ctx ends or the subscriber is
// closed.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.wg.Add(1)
	s.mu.Unlock()
	sub := &subscription{s: s, topic: topic, key: positionsKey(topic), out: make(chan *message.Message)}
	gen, pos, err := sub.claim(ctx)
	if err != nil {
		s.wg.Done()
		return nil, err
	}
	sub.gen, sub.last = gen, pos
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.base, cancel)
	go func() {
		defer s.wg.Done()
		defer close(sub.out)
		defer cancel()
		defer stop()
		sub.run(ctx)
	}()
	return sub.out, nil
}

// DeleteGroup forgets a group's position on a topic, so that trimming no
// longer waits for it. A subscription of the group that is still running
// finds its next ack refused and ends.
func DeleteGroup(ctx context.Context, client redis.UniversalClient, topic, group string) error {
	err := client.HDel(ctx, positionsKey(topic), genField(group), posField(group)).Err()
	if err != nil {
		return fmt.Errorf("redispart: delete group %s of %s: %w", group, topic, err)
	}
	return nil
}

// Position returns a group's position on a topic: the id of the last
// entry it acked ("0-0" before any), and false when the group has not
// subscribed to it.
func Position(ctx context.Context, client redis.UniversalClient, topic, group string) (string, bool, error) {
	pos, err := client.HGet(ctx, positionsKey(topic), posField(group)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("redispart: position of group %s on %s: %w", group, topic, err)
	}
	return pos, true, nil
}

// subscription is one Subscribe call.
type subscription struct {
	s     *Subscriber
	topic string
	key   string
	out   chan *message.Message
	gen   int64
	last  string // the group's position: id of the last entry recorded as acked
}

func (sub *subscription) claim(ctx context.Context) (int64, string, error) {
	res, err := claimScript.Run(ctx, sub.s.cfg.Client, []string{sub.key}, sub.s.cfg.Group).Slice()
	if err != nil {
		return 0, "", fmt.Errorf("redispart: take %s over for group %s: %w", sub.topic, sub.s.cfg.Group, err)
	}
	gen, _ := res[0].(int64)
	pos, _ := res[1].(string)
	if gen <= 0 || pos == "" {
		return 0, "", fmt.Errorf("redispart: take %s over for group %s: unexpected reply %v", sub.topic, sub.s.cfg.Group, res)
	}
	return gen, pos, nil
}

var readBackoff = backoff.Policy{Initial: 50 * time.Millisecond, Max: 2 * time.Second, Jitter: 0.2}

// run reads and delivers until ctx ends or the topic is taken over.
func (sub *subscription) run(ctx context.Context) {
	cfg := &sub.s.cfg
	log := cfg.Logger.With("topic", sub.topic, "group", cfg.Group, "generation", sub.gen)
	w := &window{holders: make(map[string]*entry)}
	verdicts := make(chan verdict, cfg.MaxInFlight)
	var watchers sync.WaitGroup
	defer watchers.Wait()
	defer func() {
		for _, e := range w.entries {
			if e.cancel != nil {
				e.cancel()
			}
		}
	}()
	cursor := sub.last
	wait := readBackoff.Start()
	idle := time.NewTimer(cfg.BlockTime)
	defer idle.Stop()
	for ctx.Err() == nil {
		next, ok := sub.handOver(ctx, w, verdicts, &watchers)
		if !ok {
			return
		}
		// Read on while there is room: blocking only when nothing is
		// in flight or waiting.
		if len(w.entries) < cfg.ReadAhead && w.inFlight < cfg.MaxInFlight {
			block := cfg.BlockTime
			if len(w.entries) > 0 {
				block = -1
			}
			streams, err := cfg.Client.XRead(ctx, &redis.XReadArgs{
				Streams: []string{sub.topic, cursor}, Count: int64(cfg.ReadAhead - len(w.entries)), Block: block,
			}).Result()
			switch {
			case errors.Is(err, redis.Nil):
				wait.Reset()
			case err != nil:
				if ctx.Err() != nil {
					return
				}
				log.Warn("redispart: read failed; retrying", "error", err)
				if wait.Wait(ctx) != nil {
					return
				}
				continue
			default:
				wait.Reset()
				n := 0
				for _, st := range streams {
					for _, m := range st.Messages {
						w.add(sub.entryOf(log, m))
						cursor = m.ID
						n++
					}
				}
				if n > 0 {
					continue
				}
			}
			if len(w.entries) == 0 {
				continue
			}
		}
		// Wait for a verdict, for a nacked entry's time, or (something
		// may have arrived meanwhile) for BlockTime.
		d := cfg.BlockTime
		if !next.IsZero() {
			d = min(d, time.Until(next))
		}
		idle.Reset(max(d, 0))
		select {
		case v := <-verdicts:
			w.settle(v, cfg.NackResendSleep)
		drain:
			for {
				select {
				case v := <-verdicts:
					w.settle(v, cfg.NackResendSleep)
				default:
					break drain
				}
			}
		case <-idle.C:
		case <-ctx.Done():
			return
		}
		idle.Stop() // since Go 1.23 a stopped timer delivers nothing stale
		if id, n := w.ackedRun(); n > 0 {
			if !sub.ack(ctx, log, id) {
				return
			}
			w.drop(n)
		}
	}
}

// ack records id as the group's position. It returns false when the topic
// was taken over or the ack could not be recorded in time.
func (sub *subscription) ack(ctx context.Context, log *slog.Logger, id string) bool {
	cfg := &sub.s.cfg
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.AckTimeout)
	defer cancel()
	trim := "1"
	if cfg.KeepAcked {
		trim = "0"
	}
	wait := readBackoff.Start()
	for {
		n, err := ackScript.Run(actx, cfg.Client, []string{sub.key, sub.topic}, cfg.Group, strconv.FormatInt(sub.gen, 10), id, trim).Int64()
		switch {
		case err == nil && n == 1:
			sub.last = id
			return true
		case err == nil:
			log.Info("redispart: a newer subscription took the topic over; this one ends", "entry", id)
			return false
		}
		log.Warn("redispart: ack not recorded; retrying", "entry", id, "error", err)
		if wait.Wait(actx) != nil {
			log.Error("redispart: ack not recorded in time; the subscription ends and the entry will be delivered again", "entry", id)
			return false
		}
	}
}
