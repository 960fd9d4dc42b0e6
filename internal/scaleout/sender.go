package scaleout

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/redispart"
)

// commandSpace derives the command ids of the runs.
var commandSpace = uuid.MustParse("6f1c1e2a-38a4-4d7e-9b0e-3f8f5c1d2a77")

// CommandID is the id of entity's command number seq: a UUID derived from
// both, so that every check knows it.
func CommandID(entity string, seq int) string {
	return uuid.NewSHA1(commandSpace, fmt.Appendf(nil, "%s/%d", entity, seq)).String()
}

// Strict says which sequence numbers are strict steps.
func Strict(seq int) bool { return seq%5 == 0 }

// Sender sends numbered commands through a command bus and collects the
// replies on a topic of its own.
type Sender struct {
	bus     *cqrs.CommandBus
	replies *redispart.Subscriber
	topic   string
	stop    context.CancelFunc
	done    chan struct{}

	mu  sync.Mutex
	got map[string]cqrs.Reply
	at  map[string]time.Time // when the first reply arrived
}

// NewSender connects a sender (on a Redis Cluster client, its commands go
// through a redisbus.DurablePublisher) that receives its replies on
// namespace + ".replies". Close it when done; it does not close rdb.
func NewSender(rdb redis.UniversalClient, namespace string, partitions int, group *cqrs.Ownership) (*Sender, error) {
	return NewSenderWithReplies(rdb, namespace, partitions, group, "")
}

// NewSenderWithReplies is NewSender with the replies on replyTopic
// (default: namespace + ".replies").
func NewSenderWithReplies(rdb redis.UniversalClient, namespace string, partitions int, group *cqrs.Ownership, replyTopic string) (*Sender, error) {
	pub, err := Publisher(rdb, nil)
	if err != nil {
		return nil, err
	}
	bus, err := cqrs.NewCommandBus(cqrs.BusConfig{Publisher: pub, Partitions: partitions, Namespace: namespace, Group: group})
	if err != nil {
		return nil, err
	}
	replies, err := redispart.NewSubscriber(redispart.SubscriberConfig{Client: rdb, Group: "sender", BlockTime: 50 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	if replyTopic == "" {
		replyTopic = namespace + ".replies"
	}
	s := &Sender{bus: bus, replies: replies, topic: replyTopic, done: make(chan struct{}), got: make(map[string]cqrs.Reply), at: make(map[string]time.Time)}
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	ch, err := replies.Subscribe(ctx, s.topic)
	if err != nil {
		stop()
		return nil, err
	}
	go s.receive(ctx, ch)
	return s, nil
}

// receive records replies until ctx ends, subscribing again when a
// subscription ends on its own (redispart ends one whose ack it could not
// record in time, as during a failover of the reply topic's master).
func (s *Sender) receive(ctx context.Context, ch <-chan *message.Message) {
	defer close(s.done)
	for {
		for m := range ch {
			var rep cqrs.Reply
			if json.Unmarshal(m.Payload, &rep) == nil {
				s.mu.Lock()
				id := m.Metadata.Get(esmill.MetaReplyTo)
				if _, seen := s.got[id]; !seen {
					s.got[id] = rep
					s.at[id] = time.Now()
				}
				s.mu.Unlock()
			}
			m.Ack()
		}
		for ch = nil; ch == nil; {
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			ch, _ = s.replies.Subscribe(ctx, s.topic)
		}
	}
}

// Send sends entity's command number seq, with its reply to the sender.
func (s *Sender) Send(ctx context.Context, entity string, seq int) error {
	return s.bus.Send(ctx, Counters, entity, Step{Seq: seq, Strict: Strict(seq)},
		cqrs.WithCommandID(CommandID(entity, seq)), cqrs.WithMessageMetadata(esmill.MetaReplyTopic, s.topic))
}

// Replies returns how many commands have been answered.
func (s *Sender) Replies() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// Reply returns the first reply to a command.
func (s *Sender) Reply(id string) (cqrs.Reply, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.got[id]
	return r, ok
}

// ReplyTimes returns when the first reply to each answered command
// arrived, by command id.
func (s *Sender) ReplyTimes() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.at)
}

// Close stops receiving replies.
func (s *Sender) Close() error {
	s.stop()
	<-s.done
	s.replies.Close()
	return s.bus.Close()
}
