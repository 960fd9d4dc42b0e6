// Package aggregate is esmill's entity model: entities (aggregates) whose
// state is rebuilt from their SierraDB stream, typed commands that produce
// typed events, and an [Executor] that runs commands one at a time per entity
// and many entities in parallel.
//
// An entity type is a value built with [Define]: its category, how each
// event changes the state ([On]), and how each command is handled
// ([Handle]). There are no global registries and user code does
// not type-assert:
//
//	var Accounts = aggregate.MustDefine[Account, string]("bank_account",
//		aggregate.On(func(a *Account, e Deposited) { a.Balance += e.Amount }),
//		aggregate.Handle(func(a Account, c Deposit, ctx *aggregate.CommandContext) ([]aggregate.Event, error) {
//			return aggregate.Events(Deposited{Amount: c.Amount}), nil
//		}),
//	)
//
//	exec, _ := aggregate.NewExecutor(client, aggregate.Config{})
//	res, err := aggregate.Bind(exec, Accounts).Execute(ctx, "alice", Deposit{Amount: 10})
//
// Events and commands name themselves with [Event.EventName] and
// [Command.CommandName]: explicit, stable strings that are stored with the
// data, never derived from Go type names (tested: TestWritesKameoFormat).
//
// # Observability
//
// The executor makes a span per command ("execute <Command>";
// Config.TracerProvider) and stores the span's context in each event's
// metadata, so that consumers continue the trace. A command run by the
// cqrs command router has the router's consumer span as its span: the
// executor adds its attributes to that span instead of starting one. The span has children
// only when they tell more than it does: a load from the store, a decision
// that reads the stream, a failed append, and every step of a command run
// again after a conflict (TestExecutorSpans). The span's attributes
// (category, command, stream id, outcome, attempts, version, events) are
// set when it ends, in one call; a sampler sees the span's name.
// It counts commands by outcome (executed, idempotent, rejected,
// conflict_retried, failed) with their duration, conflicts, cache hits,
// misses and evictions, and snapshot loads and saves
// (Config.MeterProvider; TestExecutorMetrics). See the README's
// "Operations" section.
//
// # Data format
//
// Events are stored as kameo_es stores them (see package codec): stream id
// "<category>-<id>", the event name as SierraDB's event name, a CBOR payload
// in serde's externally tagged enum layout, and the metadata envelope
// {ccmd, ceid, csid, csv, data}. Go and Rust services can share streams.
// An event type without fields is written as serde's field-less struct
// variant ({"Frozen": {}}); embed codec.Unit for a unit variant (the bare
// name "Closed"). Either form is read into either kind of type.
//
// # Event versioning
//
// An event's shape may change over the life of a store. An event type
// declares the schema version of its shape with an EventVersion method
// ([VersionedEvent]; without it, version 1). A version above 1 is stored
// with each event in the metadata key esv, which kameo_es ignores; an event
// without it (every event kameo_es or earlier esmill wrote) is version 1.
//
// Upcasters, registered with the entity type like appliers, turn a stored
// shape into a newer one. They are keyed by stored name and version, and
// chain until the current version of a registered event:
//
//   - [Upcast] is typed: a Go type describes the old shape (its EventName
//     and EventVersion say which stored shape), and a function returns the
//     newer shape. It renames an event too, when the old type's name
//     differs from the new one's.
//   - [UpcastFields] works on the payload's fields as generic values, for
//     changes easier made on a map than with a type per old shape.
//   - [Rename] reads a shape under a new name, fields unchanged.
//
// For instance, with Opened at version 3 and MoneyAdded renamed:
//
//	aggregate.Upcast[Account](func(o OpenedV1) (OpenedV2, error) { ... }),  // v1 → v2
//	aggregate.Upcast[Account](func(o OpenedV2) (Opened, error) { ... }),    // v2 → v3, current
//	aggregate.Rename[Account](
//		aggregate.EventSchema{Name: "MoneyAdded", Version: 1},
//		aggregate.EventSchema{Name: "MoneyDeposited", Version: 1}),
//
// [Define] refuses upcasters that cannot work: two from one shape, one from
// an event's current shape, a chain that ends elsewhere than at a
// registered event's current version, a circle.
//
// [Type.DecodeEvent] applies them, so everything that reads events sees
// current shapes only: rehydration in the executor and transactions,
// projections (package readmodel decodes through the entity type, and a
// renamed event reaches the handler of its current type), [Type.Decide]
// and aggregatetest (a given event of an old shape's type is upcast too),
// and the Pub/Sub subscriber through its Upcast hook ([Type.UpcastStored]).
// Snapshots hold state, not events, and are unaffected. New events are
// always written in their current shape and version. (Tested:
// TestUpcastGoldenHistories, TestWritesCurrentSchemaVersion,
// TestDecideUpcastsGivenEvents, readmodel's TestProjectionSeesCurrentShapes,
// pubsub's TestSubscriberUpcast.)
//
// A stored event that cannot be read as current is an [*EventDecodeError]
// naming the stream, the stream version, the stored name and the schema
// version, and matching [ErrEventDecode] (a poison message for the
// middleware, a parked decode error for projections). Inside it: an
// [*UpcastError] when an upcaster failed or panicked (TestUpcastError), an
// [*EventTooNewError] when the version is newer than the code knows —
// written by a newer version of the code; deploy it (TestEventTooNew) —
// and [ErrUnknownEvent] when no upcaster reads an older version
// (TestMissingUpcaster).
//
// # Guarantees
//
//   - Commands for one entity run one at a time, in arrival order; commands
//     for different entities run in parallel.
//   - Every append states the expected version of each event. A conflict
//     (another process wrote first) reloads the entity and runs the command
//     again, up to Config.MaxConflictRetries times.
//   - A command caused by an event the entity already handled, or by an
//     older event of the same source stream, returns an idempotent
//     [Result] instead of writing again (causation tracking, kept in the
//     stream's own metadata). So does a command whose id (the message id of
//     a redelivered message) the entity has already seen.
//   - A handler's error writes nothing and changes nothing. A panic in user
//     code becomes a [*PanicError] for that caller only.
//   - Idempotency is decided before the caller's expected version: a
//     command applied, then delivered again, is idempotent
//     (TestExpectVersionRedelivery).
//
// # Command ids
//
// An entity remembers the ids of its commands for
// [Config.CommandIDRetention] after each command's time (15 minutes by
// default), as 8-byte prints of their ids, and always its newest
// [Config.CommandIDMinimum]: the memory is bounded by time, not by a count
// (tested: TestRedeliveryAfterManyCommands, TestCommandIDsByTime). Two different ids share a print with a
// probability of about 2^-64, so a new command is taken for one of the n
// remembered ones with a probability of about n·2^-64 (tested: TestIDPrintsSpread).
// Command times are kept only for commands with a rate limit ([Limit]),
// as many as its Max (tested: TestHistoryOnlyForLimits).
// Choose the retention above the longest redelivery the transport and the
// callers can produce.
//
// # Fresh answers
//
// An answer that writes nothing (a rejection, an idempotent answer from a
// state check, a wrong expected version, a rate limit, a dry run) comes
// from the cached state only when it is known to be current: the command
// runs under a [Fence] that has held without a break since the state was
// last read or written (a command router's lease), or the answer rests on
// a command id or causation already recorded. Otherwise the executor
// first reads the stream beyond its cached version and decides again if it
// moved (TestStaleCacheTwoExecutors). SierraDB makes a write readable a
// moment after acknowledging it, so that read is current up to that lag.
// Load and transactions read what is new for a cached entity too.
//
// # Group commit
//
// A type defined [WithGroupCommit] joins the appends of concurrent
// commands on different entities that share a partition key into one
// EMAPPEND, one per key at a time, each event with its own expected
// version. SierraDB stores such an append entirely or not at all; when it
// fails (one command's expected version is stale, or the request fails),
// each command's events are appended again alone, so that every command's
// outcome is the one it would have had alone (tested:
// TestGroupCommitConflictIsolated). Use it for entities that share a key
// (a tenant) and see concurrent commands; it binds their streams to one
// partition, as transactions do.
//
// # Cancellation
//
// A store call returns as soon as the caller's context ends, even where
// the client would wait for its read timeout; an abandoned append is an
// [*OutcomeUnknownError] ([ErrOutcomeUnknown]): run the command again with
// the same id to find out (TestCancellationInterruptsAppend).
//
// State is cached (bounded, with an idle timeout) and can be snapshotted
// every N events ([WithSnapshots]); a snapshot carries a schema version so
// that changed code never loads an old one (tested: TestCacheEviction, TestIdleEntitiesAreDropped, TestSnapshots).
package aggregate
