package reactor

import (
	"context"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/readmodel"
)

// Handler is one registered handler of a reactor whose store handle is T.
// Build handlers with [On] and [OnAll].
type Handler[T any] struct {
	build func(x *shared) readmodel.Handler[T]
}

// On handles events of type E of the entity type typ: h gets the entity
// id, the typed event and the [Act] to run commands with. E must be
// registered in typ (checked by [New]).
func On[T any, ID comparable, E aggregate.Event](typ readmodel.EntityType[ID], h func(ctx context.Context, a *Act[T], id ID, e E) error) Handler[T] {
	return Handler[T]{build: func(x *shared) readmodel.Handler[T] {
		return readmodel.On(typ, func(ctx context.Context, tx T, id ID, e E, m readmodel.Meta) error {
			return h(ctx, newAct(x, tx, m), id, e)
		})
	}}
}

// OnAll handles every event of the entity type typ, decoded.
func OnAll[T any, ID comparable](typ readmodel.EntityType[ID], h func(ctx context.Context, a *Act[T], id ID, e aggregate.Event) error) Handler[T] {
	return Handler[T]{build: func(x *shared) readmodel.Handler[T] {
		return readmodel.OnAll(typ, func(ctx context.Context, tx T, id ID, e aggregate.Event, m readmodel.Meta) error {
			return h(ctx, newAct(x, tx, m), id, e)
		})
	}}
}

// Act is what a handler acts through, for one event: [Execute] and [Send]
// take it to run commands caused by the event. It is valid during the
// handler's call only.
type Act[T any] struct {
	x    *shared
	tx   T
	meta readmodel.Meta
	// sent holds the commands run so far for the event, by target stream
	// and command name.
	sent map[target]bool
}

type target struct{ stream, command string }

func newAct[T any](x *shared, tx T, m readmodel.Meta) *Act[T] {
	return &Act[T]{x: x, tx: tx, meta: m}
}

// Tx returns the store transaction of the batch: what the handler writes
// through it (a process manager's own state) commits with the reactor's
// checkpoint, exactly once (tested: TestReactorCrash).
func (a *Act[T]) Tx() T { return a.tx }

// Meta returns the event's position, ids, stream and metadata.
func (a *Act[T]) Meta() readmodel.Meta { return a.meta }

// Causation returns the event as the cause of a command, which [Execute]
// and [Send] set by themselves.
func (a *Act[T]) Causation() codec.Causation { return a.meta.Causation() }
