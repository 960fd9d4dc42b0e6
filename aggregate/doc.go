// Package aggregate is esmill's entity model: entities (aggregates) whose
// state is rebuilt from their SierraDB stream, typed commands that produce
// typed events, and an [Executor] that runs commands one at a time per entity
// and many entities in parallel.
//
// An entity type is a value built with [Define]: its category, how each
// event changes the state ([On]), and how each command is handled
// ([Handle]). There are no global registries and user code never
// type-asserts:
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
// data, never derived from Go type names.
//
// # Data format
//
// Events are stored as kameo_es stores them (see package codec): stream id
// "<category>-<id>", the event name as SierraDB's event name, a CBOR payload
// in serde's externally tagged enum layout, and the metadata envelope
// {ccmd, ceid, csid, csv, data}. Go and Rust services can share streams.
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
//
// State is cached (bounded, with an idle timeout) and can be snapshotted
// every N events ([WithSnapshots]); a snapshot carries a schema version so
// that changed code never loads an old one.
package aggregate
