package pubsub

import (
	"context"
	"maps"
	"sync"
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
	mu  sync.Mutex
	pos map[checkpointKey]map[uint16]uint64
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
