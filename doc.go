// Package esmill holds the vocabulary every esmill package shares: what a
// failure means for the message that caused it ([Class], [Classify]), the
// error of a closed component ([ErrClosed]), and the Watermill metadata keys
// esmill reads and writes (the Meta constants). It imports only the
// standard library, so any package can use it without cycles.
//
// The library itself lives in the subpackages: sierradb (the SierraDB
// client), sierradb/embedded (an in-process server), codec (kameo_es's data
// format), aggregate (entities and the executor), cqrs (commands as
// Watermill messages), middleware (retry, dedup, rate limit),
// sierradb/pubsub (SierraDB as a Watermill Pub/Sub), readmodel
// (projections), reactor (handlers that send commands in reply to
// events), lease (partition ownership shared by worker processes),
// redispart (a Redis Streams subscriber read by position), redisbus (the
// command bus on a Redis Cluster) and esadmin (the operations behind the
// esmill command, cmd/esmill). The README walks through them.
//
// # Error classes
//
// Every layer that decides what to do with a failed message asks
// [Classify]: the command router (reply and ack, or return for
// redelivery), the Retry middleware (retry, or park), and the projection
// runner (retry the batch, or park the event). Errors declare their own
// class with an ErrorClass method (see [Classifier]), found through
// errors.As, so that no package needs a list of another package's errors:
//
//   - [Transient]: the same message may succeed later (a lost connection, a
//     write conflict, a lock or rate-limit wait, an expired deadline). This
//     is also the class of every error that declares none.
//   - [Final]: the message got its answer and running it again cannot
//     change it (a business rejection, a wrong expected version, an
//     entity's own rate limit).
//   - [Poison]: the message itself cannot be handled (it does not decode,
//     names an unknown command or an invalid id, or user code panicked on
//     it). A panic is Poison in every layer.
//
// User code marks its own errors with [MarkTransient], [MarkFinal] and
// [MarkPoison].
package esmill
