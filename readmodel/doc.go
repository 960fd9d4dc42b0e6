// Package readmodel builds read models from SierraDB events: a projection
// [Runner] subscribes to every partition from the projection's own
// per-partition checkpoints, decodes each event into the entity type its
// category names, hands it to the typed handlers registered with [On],
// [OnAll] or [OnOther], and commits each batch's read-model writes together
// with the checkpoint advance in one transaction of a [Store]. Several
// projections share one store, each under its own name.
//
// Stores are subpackages, so importing readmodel pulls in no database
// driver: memory, file (JSON or CBOR, replaced atomically), sqlite
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
// the checkpoint with a compare-and-set: a second runner of the same
// projection fails with [ErrCheckpointConflict] instead of applying events
// twice. The subscription is acknowledged only after the commit, and a
// restarted runner resumes at checkpoint+1: every event's writes are
// applied exactly once (tested: TestCrash, TestContractJSON), provided the handlers write only through the
// handle. Effects outside the store (mail, HTTP calls) are at least once.
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
// # Progress
//
// [Runner.Status] reports the lag per partition against the partitions'
// latest sequences (EPSEQ, read every [Config.LagInterval]) and whether the
// runner is catching up or live; [Runner.Live] is closed on the switch,
// [Runner.Sync] waits until everything stored so far is applied, and
// [Runner.WaitFor] until given positions (say, of an append) are. SierraDB
// numbers each partition's events without gaps: the runner drops a
// duplicate and, should it ever see a gap, subscribes again from its
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
