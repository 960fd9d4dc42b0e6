// Package readmodel builds read models from SierraDB events: a projection
// [Runner] subscribes to every partition from the projection's own
// per-partition checkpoints, decodes each event into the entity type its
// category names, hands it to the typed handlers registered with [On],
// [OnAll] or [OnOther], and commits each batch's read-model writes together
// with the checkpoint advance in one transaction of a [Store]. Several
// projections share one store, each under its own name.
//
// Stores are subpackages, so importing readmodel pulls in no database
// driver (package lease, which it uses, brings the go-redis client): memory, file (JSON or CBOR, replaced atomically), sqlite
// (modernc.org/sqlite), postgres (pgx v5) and mongodb (mongo-driver v2,
// correct without multi-document transactions). Package checkpointtest is
// the contract suite they all pass.
//
// # Handlers
//
// A handler is typed at the edge: the store's transaction handle T, the
// entity's id type and the event type are type parameters, so user code
// does not type-assert:
//
//	readmodel.On(accounts, func(ctx context.Context, tx *sql.Tx, id string, e Deposited, m readmodel.Meta) error {
//		_, err := tx.ExecContext(ctx, `UPDATE balances SET balance = balance + ? WHERE id = ?`, e.Amount, id)
//		return err
//	})
//
// Dispatch is by exact category (the stream id up to its first '-') and
// event name. Events of other categories, snapshot streams
// ("<category>:snapshot-<id>") and events that no handler wants are skipped,
// but still advance the checkpoint.
//
// Handlers see events in their current shape: the entity type's upcasters
// (see package aggregate, "Event versioning") run on decode, and dispatch is
// by the current event name, so an event stored under an old name reaches
// the handler of the type it was renamed to ([Meta.Name] keeps the stored
// name). An upcaster's failure, or an event written by newer code, is a
// decode error: the event is poison (tested: TestProjectionSeesCurrentShapes).
//
// # Delivery
//
// Each batch (up to [Config.BatchSize] events, or what arrived within
// [Config.BatchTimeout]) is applied in subscription order, which is
// sequence order per partition, in one store transaction that also moves
// the checkpoint with a compare-and-set: of two runners advancing one
// partition from the same checkpoint, one commits and the other gets
// [ErrCheckpointConflict], reads the checkpoints again and goes on (no
// runner exits because another exists). The subscription is acknowledged
// only after the commit, and a restarted runner resumes at checkpoint+1:
// every event's writes are applied exactly once (tested: TestCrash,
// TestContractJSON, TestSharedCrash), provided the handlers
// write only through the handle. Effects outside the store (mail, HTTP
// calls) are at least once.
//
// # Sharing the partitions among instances
//
// With [Config.Leases], instances of one projection (same Name and Store,
// usually in several processes) divide SierraDB's partitions under leases
// (package lease), kept in the projection's own store (the Leases method
// of the postgres, sqlite, mongodb and file stores) or in Redis. Each
// instance subscribes only to the partitions it holds, from their stored
// checkpoints, and subscribes again whenever they change; it commits or
// abandons its batch in flight before a partition's lease is released,
// and the checkpoint compare-and-set fences an instance that paused past
// its lease. [Runner.Status] says which partitions an instance owns
// (tested with processes SIGKILLed at random: TestSharedCrash in the test
// module).
//
// # Divergence
//
// The runner compares each checkpoint with its partition's head at start,
// when it gains a partition and before its subscription resumes after a
// lost connection, and the server's identity (sierradb.Client.ServerID)
// with the one its store recorded ([ServerRecorder]). A head below a
// checkpoint, or another server, is a [*DivergedError]: the runner never
// subscribes from such a checkpoint (it would skip the events the server
// now stores below it) and never reports live; it stops or holds the
// partitions ([Config.OnDiverged]), and [Runner.Status] says diverged per
// partition with both numbers (tested: TestDivergedMemoryServerRestarted,
// TestDivergedAnotherServer, TestDivergedTornTail). A checkpoint ahead of
// the head on the same server is first given [Config.ConfirmWait]
// (default 5 s) for the head to catch up: SierraDB 0.3.1 delivers a
// multi-event append to subscribers once its first event is confirmed but
// moves the head on one event at a time, so a runner that has just
// applied such events is ahead of the head for a moment, which is no
// divergence (tested: TestAheadOfUnconfirmedHead,
// TestAheadOfUnconfirmedHeadAfterReconnect).
//
// # Failures and poison events
//
// A handler error rolls the batch back. The events before the failing one
// are committed on their own, and the failing one is retried with backoff;
// no event of the batch is lost. What a handler error means is its class
// (esmill.Classify): an error marked with esmill.MarkTransient is retried
// for as long as it takes and never makes the event poison (tested: TestHandlerErrors); an error that
// declares the class final or poison (esmill.MarkPoison, esmill.MarkFinal,
// a handler panic) makes it poison at once; any other error after
// [Config.MaxAttempts] failures. An event that cannot be decoded is poison
// too. Under [Park] a poison event is recorded
// with the reason in the store ([Store.Parked]) in the transaction that
// moves the checkpoint past it; under [Stop] the runner ends with a
// [*PoisonError] before it. Nothing is skipped silently.
//
// # Replaying and skipping parked events
//
// An [Admin] (from [NewAdmin], in an admin tool that needs no running
// runner, or [Runner.Admin] while one runs in the process) lists and shows
// parked events, replays one through the projection's handlers once they
// are fixed, or skips it, recording who did it and why
// ([Store.Resolved]). A replay applies the event and takes it off the
// parked list ([Tx.Unpark]) in one store transaction, so it is applied
// exactly once, whoever replays it at the same time (tested:
// TestContract, whose contract suite runs on every store: Unpark, UnparkOnce, ReplayAndSkip,
// AdminWithoutRunner). A replay that fails again leaves the event parked,
// its reason and attempts updated ([*ReplayError]).
//
// Under [Config.Hold] = [HoldEntity] the later events of a stream whose
// event is parked are parked behind it ([CauseHeld]) instead of being
// applied out of context; other streams go on. Replaying or skipping the
// stream's first parked event applies the held ones in stream order, each
// in its own transaction, until one fails (it stays parked, now first:
// [Outcome.Blocked]). A held event cannot be replayed ahead of the event it
// waits for ([ErrNotFirst]). A runner learns of a resolution made by
// another process within [Config.LagInterval]; until then it holds the
// stream's new events, and releases them in order (tested:
// ReleasedElsewhere).
//
// # Progress
//
// [Runner.Status] reports the lag per partition against the partitions'
// latest sequences (EPSEQ, read every [Config.LagInterval]; never clamped:
// negative when the server is behind) and the runner's state; its String
// method is for people (tested: TestDivergedTornTail). While catching up the runner logs its progress
// every [Config.ProgressInterval]: events/s, remaining events per
// partition and an ETA. [Runner.Live] is closed when it has first caught
// up, [Runner.Sync] waits until everything stored so far is applied, and
// [Runner.WaitFor] until given positions (say, of an append) are.
// SierraDB numbers each partition's events without gaps: the runner drops
// a duplicate and, should it ever see a gap, subscribes again from its
// checkpoints.
//
// # Rebuilds
//
// [Store.Reset] forgets a projection (checkpoints, parked events and, through
// the drop function, its read model); the next runner replays it from the
// start. Better, a blue/green rebuild runs "name@v2" beside "name@v1" into
// its own tables and switches a pointer when it has caught up:
// [SwitchWhenCaughtUp] and [Switcher].
package readmodel
