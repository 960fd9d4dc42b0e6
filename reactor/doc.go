// Package reactor runs process managers: handlers that consume SierraDB
// events, typed as in package readmodel, and run commands because of them,
// such as crediting account B when account A was debited for a transfer.
//
// A [Reactor] is a readmodel.Runner whose handlers act instead of writing a
// read model: it subscribes to every partition from its checkpoints (kept
// in any readmodel store), applies events in batches, commits the
// checkpoint after the batch's handlers returned, and has the runner's
// status, lag, parked events and admin.
//
//	transfers, err := reactor.New(reactor.Config[*sql.Tx]{
//		Name: "transfers", Client: client, Store: store, Executor: exec,
//		Handlers: []reactor.Handler[*sql.Tx]{
//			reactor.On(bank.Accounts, func(ctx context.Context, a *reactor.Act[*sql.Tx], from string, e bank.TransferSent) error {
//				_, err := reactor.Execute(ctx, a, bank.Accounts, e.To, bank.ReceiveTransfer{From: from, Amount: e.Amount})
//				return err
//			}),
//		},
//	})
//
// # Commands run once per causing event
//
// [Execute] (an executor in this process) and [Send] (a cqrs command bus)
// set the handled event as the command's causation. The target entity
// records, in its own stream, the commands it ran per causing event, and
// answers a repeat as idempotent instead of running it again. Events are
// delivered at least once (a batch is committed after its handlers ran,
// and a failed or interrupted batch runs again), so every command runs
// exactly once per event and command name (tested: TestExecuteOncePerEvent,
// TestSendOncePerEvent, and, with reactor processes killed at random,
// TestReactorCrash in the test module).
//
// A handler that runs two commands for one event and dies between them is
// delivered the event again: the first command comes back idempotent, the
// second runs (tested: TestStoppedBetweenTwoCommands). For this the handler
// must run the same commands for the same event each time: decide from the
// event (and state written through [Act.Tx]), not from the clock or other
// changing state. The same command (by name) for the same entity twice for
// one event would be taken for a repeat of the first and dropped: the
// reactor refuses it with [ErrDuplicateCommand] (tested:
// TestDuplicateCommandRefused).
//
// # Rejections and failures
//
// A rejected command (aggregate.ErrRejected, a business rule) is a final
// answer: Execute returns it. A handler that handles it (a compensating
// command, as the bank example refunds a transfer to a closed account)
// keeps its stream flowing (tested: TestRejectedHandled); one that returns
// it has its event parked at once, with the reason, never retried (tested:
// TestRejectedIsParkedOnce). Connection failures are marked transient and
// retried for as long as it takes; other errors are retried MaxAttempts
// times, then the event is parked.
//
// A reactor always runs with readmodel.HoldEntity: the later events of a
// stream whose event is parked are parked behind it, and applied in order
// when it is replayed (after the handler is fixed) or skipped (tested:
// TestReplayAfterFix). This matters more than for a projection: an entity
// answers a command caused by an older event of a stream than one it has
// already handled as a repeat (aggregate.OutOfOrder), so an event replayed
// after later events of its stream had run their commands would silently
// run nothing.
//
// The same reasoning sets a limit: the commands that the events of one
// stream cause on one entity must come from one reactor (which handles the
// stream's events in order). Two reactors, or a reactor and other code,
// sending commands caused by events of one stream to one entity, each at
// its own pace, would see the slower one's commands dropped as out of
// order.
//
// # Instances
//
// Each reactor name keeps one set of checkpoints; its events are handled
// in order per partition by the instance that commits them. Instances of
// one reactor (the same Name and Store, usually in several processes)
// share its partitions under leases: set [Config.Leases] to the store's
// own leases (the Leases method of the postgres, sqlite, mongodb and file
// stores) or a lease.RedisStore, and each partition is handled by the one
// instance that holds it; a killed instance's partitions go to the others
// after [Config.LeaseTTL]. Without Leases a second instance works on every
// partition too, and all but one of them retry each batch after a
// checkpoint conflict. Either way nothing runs twice: a batch handled again
// (after a kill, a conflict or a lost lease) sends its commands again, and
// they come back idempotent. The multi-process test (TestReactorCrash in
// the test module) runs three instances sharing the partitions, SIGKILLed
// and restarted at random, and counts 0 commands lost or executed twice.
package reactor
