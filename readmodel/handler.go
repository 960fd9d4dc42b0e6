package readmodel

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/sierradb"
)

// Meta is what a handler learns about an event besides its payload.
type Meta struct {
	// Projection is the name of the projection applying the event, so
	// that one handler can serve several versions of a projection (for
	// instance to choose its tables).
	Projection    string
	Position      Position
	EventID       uuid.UUID
	TransactionID uuid.UUID
	StreamID      string
	StreamVersion uint64
	// Name is the stored event name: for an event renamed since it was
	// stored, its old name (the typed event is of the current type).
	Name      string
	Timestamp time.Time
	// Metadata is the decoded metadata envelope (empty for [OnOther]
	// handlers, which get the raw event).
	Metadata codec.Metadata
}

// EntityType is the part of an [aggregate.Type] a projection needs.
// DecodeEvent returns events in their current shape, through the type's
// upcasters; StoredEventNames says which stored names (old names of renamed
// events included) are read as which current events.
type EntityType[ID comparable] interface {
	Category() string
	StoredEventNames() map[string][]string
	ParseStreamID(streamID string) (ID, error)
	DecodeEvent(ev sierradb.Event) (aggregate.Event, codec.Metadata, error)
	EncodeEvent(ev aggregate.Event) (string, []byte, error)
}

// Handler is one registered event handler of a projection whose store
// handle is T. Build handlers with [On], [OnAll] and [OnOther].
type Handler[T any] struct {
	category string
	event    string // "" with all: every event of the category
	all      bool
	other    bool
	kind     kind
	check    func() error
	call     func(ctx context.Context, tx T, d *decoded, m Meta) error
	rawCall  func(ctx context.Context, tx T, ev sierradb.Event, m Meta) error
}

// kind is the untyped view of an entity type.
type kind struct {
	category string
	// names maps each stored event name to the current names it is read
	// as (see aggregate.Type.StoredEventNames).
	names  map[string][]string
	id     any // the EntityType value, to recognise one type given twice
	decode func(ev sierradb.Event) (*decoded, error)
}

// decoded is an event decoded into its entity type.
type decoded struct {
	id    any
	event aggregate.Event
	meta  codec.Metadata
}

func kindOf[ID comparable](typ EntityType[ID]) kind {
	return kind{
		category: typ.Category(),
		names:    typ.StoredEventNames(),
		id:       typ,
		decode: func(ev sierradb.Event) (*decoded, error) {
			id, err := typ.ParseStreamID(ev.StreamID)
			if err != nil {
				return nil, fmt.Errorf("stream id %q: %w", ev.StreamID, err)
			}
			e, m, err := typ.DecodeEvent(ev)
			if err != nil {
				return nil, err
			}
			return &decoded{id: id, event: e, meta: m}, nil
		},
	}
}

// On handles events of type E of the entity type typ: h gets the entity id
// and the typed event. E must be registered in typ (checked by [New]).
// Handlers of one event run in registration order.
func On[T any, ID comparable, E aggregate.Event](typ EntityType[ID], h func(ctx context.Context, tx T, id ID, e E, m Meta) error) Handler[T] {
	var zero E
	return Handler[T]{
		category: typ.Category(),
		event:    zero.EventName(),
		kind:     kindOf(typ),
		check: func() error {
			if _, _, err := typ.EncodeEvent(zero); err != nil {
				return fmt.Errorf("readmodel: On(%s, %T): %w", typ.Category(), zero, err)
			}
			return nil
		},
		call: func(ctx context.Context, tx T, d *decoded, m Meta) error {
			e, ok := d.event.(E)
			if !ok {
				return esmill.MarkPoison(fmt.Errorf("readmodel: event %q decoded as %T, not %T", m.Name, d.event, zero))
			}
			return h(ctx, tx, d.id.(ID), e, m)
		},
	}
}

// OnAll handles every event of the entity type typ, decoded, for
// projections that switch on the event themselves.
func OnAll[T any, ID comparable](typ EntityType[ID], h func(ctx context.Context, tx T, id ID, e aggregate.Event, m Meta) error) Handler[T] {
	return Handler[T]{
		category: typ.Category(),
		all:      true,
		kind:     kindOf(typ),
		call: func(ctx context.Context, tx T, d *decoded, m Meta) error {
			return h(ctx, tx, d.id.(ID), d.event, m)
		},
	}
}

// OnOther handles, undecoded, every event whose category no [On] or
// [OnAll] handler of the projection covers (kameo_es's fallback handler).
func OnOther[T any](h func(ctx context.Context, tx T, ev sierradb.Event, m Meta) error) Handler[T] {
	return Handler[T]{other: true, rawCall: h}
}

// Category returns the category of a stream id: the part before the first
// '-'. A snapshot stream "<category>:snapshot-<id>" thus has the category
// "<category>:snapshot" and matches no entity type.
func Category(streamID string) string {
	c, _, _ := strings.Cut(streamID, "-")
	return c
}

// dispatch is the projection's handler table.
type dispatch[T any] struct {
	cats  map[string]*catHandlers[T]
	other []Handler[T]
}

type catHandlers[T any] struct {
	kind   kind
	known  map[string]bool
	byName map[string][]Handler[T] // by current event name
	all    []Handler[T]
}

// wants reports whether a stored event name has handlers, so that it is
// worth decoding: OnAll handlers, or On handlers of a current event it may
// be read as (itself, or the new name of a renamed event).
func (c *catHandlers[T]) wants(stored string) bool {
	if len(c.all) > 0 {
		return true
	}
	for _, n := range c.kind.names[stored] {
		if len(c.byName[n]) > 0 {
			return true
		}
	}
	return false
}

// handlers returns the handlers of a decoded event, by its current name.
func (c *catHandlers[T]) handlers(d *decoded) []Handler[T] {
	return slices.Concat(c.byName[d.event.EventName()], c.all)
}

func newDispatch[T any](hs []Handler[T]) (*dispatch[T], error) {
	d := &dispatch[T]{cats: make(map[string]*catHandlers[T])}
	var errs []error
	for _, h := range hs {
		if h.other {
			if h.rawCall == nil {
				errs = append(errs, fmt.Errorf("readmodel: OnOther with a nil function"))
			}
			d.other = append(d.other, h)
			continue
		}
		if h.call == nil {
			errs = append(errs, fmt.Errorf("readmodel: a zero Handler; build handlers with On, OnAll or OnOther"))
			continue
		}
		if h.check != nil {
			if err := h.check(); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		c := d.cats[h.category]
		if c == nil {
			c = &catHandlers[T]{kind: h.kind, known: make(map[string]bool), byName: make(map[string][]Handler[T])}
			for n := range h.kind.names {
				c.known[n] = true
			}
			d.cats[h.category] = c
		} else if c.kind.id != h.kind.id {
			errs = append(errs, fmt.Errorf("readmodel: two different entity types with category %q", h.category))
			continue
		}
		if h.all {
			c.all = append(c.all, h)
		} else {
			c.byName[h.event] = append(c.byName[h.event], h)
		}
	}
	if len(hs) == 0 {
		errs = append(errs, fmt.Errorf("readmodel: no handlers"))
	}
	if len(errs) > 0 {
		return nil, joinErrs(errs)
	}
	return d, nil
}
