package reactor

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/google/uuid"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/sierradb"
)

var (
	// ErrDuplicateCommand: a handler ran the same command (by name) for
	// the same entity twice for one event. The entity's causation
	// tracking would take the second for a repeat of the first and drop
	// it, so the reactor refuses it: the event is poison. The error is a
	// [*DuplicateCommandError].
	ErrDuplicateCommand = esmill.MarkPoison(errors.New("reactor: the same command sent twice to one entity for one event"))
	// ErrNoExecutor: [Execute] on a reactor without Config.Executor.
	ErrNoExecutor = esmill.MarkPoison(errors.New("reactor: Execute needs Config.Executor"))
	// ErrNoBus: [Send] on a reactor without Config.Bus.
	ErrNoBus = esmill.MarkPoison(errors.New("reactor: Send needs Config.Bus"))
)

// DuplicateCommandError details an [ErrDuplicateCommand].
type DuplicateCommandError struct {
	Reactor  string
	Event    string // the causing event's stream and version
	StreamID string // the target entity
	Command  string
}

func (e *DuplicateCommandError) Error() string {
	return fmt.Sprintf("reactor %q: the handler of %s ran %s on %s twice; the entity would drop the second as a repeat of the first: "+
		"run one command (merge them) or give them different command names", e.Reactor, e.Event, e.Command, e.StreamID)
}

func (e *DuplicateCommandError) Unwrap() error { return ErrDuplicateCommand }

// ErrorClass is [esmill.Poison].
func (e *DuplicateCommandError) ErrorClass() esmill.Class { return esmill.Poison }

// shared is what a reactor's handlers share: where commands go, and the
// counts.
type shared struct {
	name     string
	executor *aggregate.Executor
	bus      *cqrs.CommandBus

	executed, idempotent, sent, failed atomic.Uint64
}

// namespace derives command ids.
var namespace = uuid.MustParse("8a0f7c52-3f3e-4c2b-9d55-6a1f0e7b2c41")

// claim records a command for the event, and returns its id: derived
// from the reactor, the event, the target and the command, so that a
// redelivered event sends it under the same id (a message UUID the
// dedup middleware recognises, a command id the entity remembers).
func (a *Act[T]) claim(stream, command string) (string, error) {
	k := target{stream, command}
	if a.sent[k] {
		return "", &DuplicateCommandError{Reactor: a.x.name, Event: fmt.Sprintf("%s v%d", a.meta.StreamID, a.meta.StreamVersion),
			StreamID: stream, Command: command}
	}
	if a.sent == nil {
		a.sent = make(map[target]bool)
	}
	a.sent[k] = true
	return uuid.NewSHA1(namespace, []byte(a.x.name+"\x00"+a.meta.EventID.String()+"\x00"+stream+"\x00"+command)).String(), nil
}

// classify gives a command's failure the class the runner acts on: what
// declares a class keeps it (a rejection is final: the event is parked at
// once, with the reason); a connection failure is marked transient, which
// the runner retries without parking (see esmill.MarkTransient).
func classify(err error) error {
	if _, declared := esmill.Declared(err); declared {
		return err
	}
	if sierradb.IsRetryable(err) {
		return esmill.MarkTransient(err)
	}
	return err
}

// Execute runs cmd on the entity id of type typ with the reactor's
// executor, caused by the event being handled: the entity runs it once per
// causing event and command name, so a redelivered or replayed event gets
// an idempotent result instead of a second run. The command id is derived
// from the event and the target, and the event's correlation id, if any,
// is passed on. opts may add options (they cannot change the causation).
//
// A rejection (aggregate.ErrRejected) is returned as it is: handle it (a
// compensating command, say), or return it, and the event is parked at
// once with the reason (its stream's later events held behind it), never
// retried (tested: TestRejectedIsParkedOnce). A connection failure is marked transient: the batch is retried
// for as long as it takes.
func Execute[T any, S any, ID comparable](ctx context.Context, a *Act[T], typ *aggregate.Type[S, ID], id ID, cmd aggregate.Command, opts ...aggregate.ExecOption) (aggregate.Result, error) {
	if a.x.executor == nil {
		return aggregate.Result{}, ErrNoExecutor
	}
	cmdID, err := a.claim(typ.StreamID(id), cmd.CommandName())
	if err != nil {
		return aggregate.Result{}, err
	}
	all := make([]aggregate.ExecOption, 0, len(opts)+3)
	all = append(all, aggregate.WithCommandID(cmdID))
	if c := a.meta.Metadata.CorrelationID; c != "" {
		all = append(all, aggregate.WithCorrelationID(c))
	}
	all = append(append(all, opts...), aggregate.CausedBy(a.Causation()))
	res, err := aggregate.Bind(a.x.executor, typ).Execute(ctx, id, cmd, all...)
	switch {
	case err != nil:
		a.x.failed.Add(1)
		return res, classify(err)
	case res.Idempotent:
		a.x.idempotent.Add(1)
	default:
		a.x.executed.Add(1)
	}
	return res, nil
}

// Send publishes cmd for the entity id of type typ on the reactor's bus,
// caused by the event being handled, without waiting for it to run: the
// entity runs it once per causing event and command name, however often
// the event or the message is delivered. The message UUID is derived from
// the event and the target; the event's correlation id, if any, is passed
// on. A publish failure that declares no class is marked transient.
func Send[T any, S any, ID comparable](ctx context.Context, a *Act[T], typ *aggregate.Type[S, ID], id ID, cmd aggregate.Command, opts ...cqrs.SendOption) error {
	if a.x.bus == nil {
		return ErrNoBus
	}
	cmdID, err := a.claim(typ.StreamID(id), cmd.CommandName())
	if err != nil {
		return err
	}
	all := make([]cqrs.SendOption, 0, len(opts)+3)
	all = append(all, cqrs.WithMessageUUID(cmdID))
	if c := a.meta.Metadata.CorrelationID; c != "" {
		all = append(all, cqrs.WithCorrelationID(c))
	}
	all = append(append(all, opts...), cqrs.CausedBy(a.Causation()))
	if err := cqrs.For(a.x.bus, typ).Send(ctx, id, cmd, all...); err != nil {
		a.x.failed.Add(1)
		if _, declared := esmill.Declared(err); !declared {
			err = esmill.MarkTransient(err)
		}
		return err
	}
	a.x.sent.Add(1)
	return nil
}
