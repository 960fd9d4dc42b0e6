package pubsub

import (
	"strings"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
)

// DefaultAllTopic is the default topic that subscribes to every event.
const DefaultAllTopic = "*"

// CategorySuffix ends a category topic: "order-*" subscribes to every stream
// whose id starts with "order-".
const CategorySuffix = "-*"

// Topics maps Watermill topics to SierraDB streams. The zero value is the
// default mapping: a topic is the stream id, "<category>-*" is a category
// and "*" is every event.
type Topics struct {
	// AllTopic is the subscribe-only topic that delivers every event of
	// every stream. Default: [DefaultAllTopic].
	AllTopic string
	// StreamID maps a stream topic to its stream id, and the prefix of a
	// category topic ("order-" of "order-*") to the stream id prefix.
	// Optional: the identity. The result must be a valid stream id (1 to
	// 64 bytes, no NUL byte); a prefix must be non-empty.
	StreamID func(topic string) string
}

type topicKind uint8

const (
	topicStream topicKind = iota
	topicCategory
	topicAll
)

// target is a parsed topic.
type target struct {
	kind topicKind
	// stream is the stream id of a stream topic, prefix the stream id
	// prefix of a category topic.
	stream string
	prefix string
	// key is a stream topic's partition key.
	key uuid.UUID
}

// match reports whether an event belongs to the target.
func (t target) match(ev *sierradb.Event) bool {
	switch t.kind {
	case topicStream:
		return ev.StreamID == t.stream && ev.PartitionKey == t.key
	case topicCategory:
		return strings.HasPrefix(ev.StreamID, t.prefix)
	}
	return true
}

func (tp Topics) allTopic() string {
	if tp.AllTopic == "" {
		return DefaultAllTopic
	}
	return tp.AllTopic
}

func (tp Topics) mapID(s string) string {
	if tp.StreamID == nil {
		return s
	}
	return tp.StreamID(s)
}

// parse classifies a topic and maps it to a stream or a prefix.
func (tp Topics) parse(topic string) (target, error) {
	switch {
	case topic == "":
		return target{}, &TopicError{Topic: topic, Reason: "empty topic"}
	case topic == tp.allTopic():
		return target{kind: topicAll}, nil
	case len(topic) > len(CategorySuffix) && strings.HasSuffix(topic, CategorySuffix):
		prefix := tp.mapID(strings.TrimSuffix(topic, "*"))
		if prefix == "" || len(prefix) > sierradb.MaxStreamIDLen || strings.IndexByte(prefix, 0) >= 0 {
			return target{}, &TopicError{Topic: topic, Reason: "category prefix " + prefix + " cannot start a stream id"}
		}
		return target{kind: topicCategory, prefix: prefix}, nil
	}
	id := tp.mapID(topic)
	if err := sierradb.ValidateStreamID(id); err != nil {
		return target{}, &TopicError{Topic: topic, Reason: "not a valid stream id", Err: err}
	}
	return target{kind: topicStream, stream: id, key: sierradb.StreamPartitionKey(id)}, nil
}

// parseStream is parse for Publish: only stream topics are accepted.
func (tp Topics) parseStream(topic string) (target, error) {
	t, err := tp.parse(topic)
	if err != nil {
		return t, err
	}
	if t.kind != topicStream {
		return target{}, &TopicError{Topic: topic, Reason: "a category or all-events topic is subscribe-only"}
	}
	return t, nil
}
