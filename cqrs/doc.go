// Package cqrs carries commands as Watermill messages: a [CommandBus] that
// any service uses to send a command (fire and forget) or to execute one and
// wait for its result, and a [CommandRouter] that consumes command messages
// from any Watermill subscriber and hands them to an aggregate.Executor.
//
// # Messages
//
// A command message's payload is the encoded command (CBOR by default);
// its metadata names the entity and the command ([MetaCategory],
// [MetaEntityID], [MetaCommand]) and carries causation, correlation, the
// expected version and the reply topic. The message UUID is the command's
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
// its own handler. The bus and every router must agree on Partitions and on
// the topic function. A command is acked only once its events are stored.
//
// # Outcomes
//
// A command the entity rejects (a business rule, a wrong expected version,
// a rate limit) is a final outcome: the router acks it and replies with the
// error. A message that cannot be decoded is acked and answered with an
// error by default, or returned as an error for a poison-queue middleware
// ([RouterConfig.FailBadCommands]). Transient failures are returned to
// Watermill, which nacks the message for redelivery.
package cqrs
