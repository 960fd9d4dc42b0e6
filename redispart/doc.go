// Package redispart is a Watermill subscriber for Redis Streams built for
// partitions that one consumer owns at a time, such as the command topics
// of a cqrs.CommandRouter whose instances share a lease group.
//
// It reads what watermill-redisstream's publisher writes (the same
// marshaller), but not through a consumer group: a subscription reads its
// topic by position. Each group keeps, per topic, the id of the last
// entry it acked, in a hash next to the stream (same hash slot, so it
// works on a Redis Cluster). A subscription delivers the entries after
// that position in order, one at a time, and moves the position only when
// the current one is acked. What it reads ahead stays in its memory; Redis
// holds no per-consumer state (no pending-entries list) that a paused or
// dead consumer could keep from the next one.
//
// # Side by side, in order per key
//
// One message at a time leaves a topic's handler idle while each ack is
// recorded and the next entry fetched. With [SubscriberConfig.MaxInFlight]
// above 1 and an [SubscriberConfig.OrderKey], a subscription hands over up
// to MaxInFlight messages before the first is acked: messages of one key
// one at a time in stream order, messages of different keys side by side
// (Watermill's router runs each message it receives in a goroutine of its
// own). The position moves only over a run of acked entries with nothing
// unacked before it, recorded once for the acks that arrived together; an
// entry acked after one that was not is delivered again after a takeover
// or a crash, so delivery stays at least once and in order per key
// (TestWindowKeepsEachKeyInOrder, TestWindowPositionStopsAtFirstUnacked,
// TestWindowNackKeepsKeyOrder, TestUniversalWindowed). For the command
// topics of a cqrs.CommandRouter, cqrs.OrderKey keeps each entity's
// commands in order while the partition's entities run side by side.
//
// # Takeover and fencing
//
// Every Subscribe takes the group's position on the topic over: it gets a
// generation number above every earlier one, and an ack is recorded only
// if the subscription's generation is still the newest (a compare-and-set
// in a Lua script). An older subscription, in a paused or partitioned
// process, finds its next ack refused and ends; the newer one starts at
// the last recorded ack, so it delivers first what the older one had not
// acked, then what follows, in the order of the stream. Subscribe only
// where you own the topic: two live subscriptions of one group on one
// topic take it from each other at every subscribe (the command router
// subscribes only to the partitions its lease member holds).
//
// # Guarantees (tested)
//
//   - Per topic and group: entries are delivered in stream order (per
//     OrderKey with MaxInFlight above 1), and
//     after a takeover the new subscription starts right after the last
//     recorded ack (TestTakeoverResumesAfterLastAck, TestStaleAckIsRefused).
//   - At least once: an entry whose ack was not recorded (a crash, a
//     takeover, a lost connection) is delivered again, first. Handlers
//     must be idempotent; the esmill executor is, by command id.
//   - Nothing is lost by trimming: entries are trimmed only below the
//     lowest position of every group that ever subscribed to the topic
//     (TestTrimWaitsForEveryGroup); KeepAcked turns trimming off.
//   - Watermill's universal Pub/Sub suite passes (TestUniversal), with
//     Features: GuaranteedOrder, GuaranteedOrderWithSingleSubscriber
//     (several live subscriptions of a group take the topic from each
//     other), Persistent, ConsumerGroups (each group its own position;
//     trimming waits for every group that subscribed), no
//     ExactlyOnceDelivery. It survives dropped connections
//     (TestDroppedConnections).
//
// Each subscription blocks one connection of the client while it waits
// for entries (XREAD BLOCK, [SubscriberConfig.BlockTime]): size the
// client's pool for the topics a process subscribes to.
package redispart
