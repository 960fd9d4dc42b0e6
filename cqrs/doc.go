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
// its own handler. The bus and every router must agree on Partitions and on
// the topic function. A command is acked only once its events are stored.
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
// Watermill, which nacks the message for redelivery. [Reply] documents
// what its Version means for each outcome.
package cqrs
