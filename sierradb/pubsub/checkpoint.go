package pubsub

import (
	"context"
	"maps"
	"sync"

	"github.com/esmill/esmill/sierradb"
)

// CheckpointStore keeps the positions of consumer groups: for a group and
// a topic, the partition sequence of the last event processed in each
// partition. A [Subscriber] with a ConsumerGroup loads the positions when
// it subscribes and saves them as messages are acknowledged.
//
// Implementations must be safe for concurrent use. Save is last writer
// wins; see the package documentation for what that means when two
// processes run the same group.
type CheckpointStore interface {
	// Load returns the last processed partition sequence per partition
	// of (group, topic): an empty map when the group has processed
	// nothing of the topic yet.
	Load(ctx context.Context, group, topic string) (map[uint16]uint64, error)
	// Save records that the group has processed every event of the
	// topic in partition up to and including sequence.
	Save(ctx context.Context, group, topic string, partition uint16, sequence uint64) error
}

// MemoryCheckpoints is an in-memory [CheckpointStore]. Positions survive
// subscribers but not the process; share one value between the subscribers
// that should resume each other. The zero value is not usable: call
// [NewMemoryCheckpoints].
type MemoryCheckpoints struct {
	mu      sync.Mutex
	pos     map[checkpointKey]map[uint16]uint64
	servers map[checkpointKey]string
}

type checkpointKey struct{ group, topic string }

// NewMemoryCheckpoints returns an empty in-memory checkpoint store.
func NewMemoryCheckpoints() *MemoryCheckpoints {
	return &MemoryCheckpoints{pos: make(map[checkpointKey]map[uint16]uint64)}
}

// Load implements [CheckpointStore].
func (m *MemoryCheckpoints) Load(_ context.Context, group, topic string) (map[uint16]uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.pos[checkpointKey{group, topic}]), nil
}

// Save implements [CheckpointStore].
func (m *MemoryCheckpoints) Save(_ context.Context, group, topic string, partition uint16, sequence uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := checkpointKey{group, topic}
	p := m.pos[k]
	if p == nil {
		p = make(map[uint16]uint64)
		m.pos[k] = p
	}
	p[partition] = sequence
	return nil
}

// checkpointer keeps a consumer group's positions for one subscription.
// It is used only by the subscription's goroutine.
type checkpointer struct {
	s     *Subscriber
	topic string
	dirty map[uint16]uint64
	acks  int
}

// ack records a processed event and saves the positions every
// CheckpointEvery acks.
func (c *checkpointer) ack(ctx context.Context, ev *sierradb.Event) {
	if c == nil {
		return
	}
	c.dirty[ev.PartitionID] = ev.PartitionSequence
	c.acks++
	if c.acks >= c.s.cfg.CheckpointEvery {
		c.save(ctx)
	}
}

// skip records the positions of other streams' events that a category
// passed over. Every event delivered before them has been acked (delivery
// is one at a time, in order), so the positions may move past them. They
// are saved with the next ack, or now if no message comes with them.
func (c *checkpointer) skip(ctx context.Context, it *item) {
	if c == nil || len(it.skips) == 0 {
		return
	}
	for p, seq := range it.skips {
		c.dirty[p] = seq
	}
	if it.msg == nil {
		c.save(ctx)
	}
}

// flush saves what is left when the subscription ends.
func (c *checkpointer) flush(ctx context.Context) { c.save(ctx) }

// save writes the positions not saved yet. It does not use the
// subscription's cancellation (which may be what ends the subscription),
// only CheckpointTimeout.
func (c *checkpointer) save(ctx context.Context) {
	if len(c.dirty) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.s.cfg.CheckpointTimeout)
	defer cancel()
	group := c.s.cfg.ConsumerGroup
	for p, seq := range c.dirty {
		if err := c.s.cfg.Checkpoints.Save(ctx, group, c.topic, p, seq); err != nil {
			c.s.cfg.Logger.Error("sierradb/pubsub: saving checkpoint failed; will retry",
				"topic", c.topic, "consumer_group", group, "partition", p, "sequence", seq, "error", err)
			return
		}
		delete(c.dirty, p)
	}
	c.acks = 0
}
