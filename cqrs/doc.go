// Package cqrs carries commands as Watermill messages: a [CommandBus] that
// any service uses to send a command (fire and forget) or to execute one and
// wait for its result, and a [CommandRouter] that consumes command messages
// from any Watermill subscriber and hands them to an aggregate.Executor.
//
// # Messages
//
// A command message's payload is the encoded command (CBOR by default);
// its metadata names the entity and the command (esmill.MetaCategory,
// esmill.MetaEntityID, esmill.MetaCommand) and carries causation,
// correlation, the entity's expected version and the reply topic, under
// the keys package esmill defines once for every package. The message UUID is the command's
// id: the executor remembers it in the entity's stream, so a message
// delivered twice writes its events once.
//
// # Partitioned topics
//
// Most Watermill subscribers deliver the next message of a subscription only
// after the previous one is acked. To run different entities in parallel
// while keeping each entity's order, commands of one entity type are spread
// over Partitions topics ("esmill.commands.<category>.<n>") by a stable
// hash of the entity's stream id, and the router consumes each topic with
// its own handler. The bus and every router must agree on Partitions, the
// topic function and the Namespace; every command carries the bus's count,
// and a router refuses another count, or an entity sent to another
// partition's topic, naming both ([PartitionMismatchError]). A command is
// acked only once its events are stored (tested:
// TestRouterAcksOnlyOnceEventsAreStored).
//
// # Several router processes
//
// Routers given an [Ownership] (a lease.Store and a group name) divide the
// partitions among the group's live members: a router subscribes to a
// partition's topics only while it holds the partition's lease, checks
// the lease before each command, and runs the command under an
// aggregate.Fence, which the executor checks before it appends and which
// lets it answer from its cache. Partitions move within about two renew
// intervals on a join or a graceful leave (Close), and within the lease
// TTL plus a renewal after a crash. Read the topics with package
// redispart: a new owner resumes right after the last acked command, so
// per-entity order holds across handovers (TestChaosOwnership in
// internal/scaleout: 0 out of order, lost, applied twice or wrongly
// rejected while worker processes are SIGKILLed). Any other subscriber
// works behind the ownership gate, with the order it can give: through a
// watermill-redisstream consumer group, commands an old owner read ahead
// come back after MaxIdleTime, behind newer ones. A bus given the group
// (BusConfig.Group) checks its partition count at its first send.
//
// # Retries and timeouts
//
// Execute without a reply in time returns a [*TimeoutError]: the outcome
// is unknown. Calling Execute again with the same command for the same
// entity retries it under the same command id ([BusConfig.RetryWindow]);
// [WithCommandID] names the id explicitly, [AsNewCommand] opts out.
//
// # Outcomes
//
// The router asks esmill.Classify what a failure means, as the Retry
// middleware and the projection runner do. A final outcome (the entity
// rejected the command: a business rule, a wrong expected version, its
// rate limit) is acked and answered with the error. A poison outcome (a
// message that does not decode, an unknown command, an invalid id, a panic
// in user code) is answered too, and acked by default, or returned as the
// handler's error for a poison-queue middleware
// ([RouterConfig.FailBadCommands]). A transient failure is returned to
// Watermill, which nacks the message for redelivery. A command is acked
// only once its reply is published too: a reply the ReplyPublisher
// refuses (its Redis master died, say) is returned as a transient
// [*ReplyNotSentError], so that the redelivered message is answered
// (Idempotent, when the events were stored the first time). [Reply]
// documents what its Version means for each outcome.
package cqrs
