package aggregate

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/sierradb"
)

// history is what a type knows of its events' past shapes.
type history struct {
	// upcasts holds the upcaster from each old shape.
	upcasts map[EventSchema]*upcastDef
	// oldTypes maps the Go type of an old shape (a typed upcaster's
	// input) to the shape, so that a given event value of it is upcast
	// too (Decide, aggregatetest).
	oldTypes map[reflect.Type]EventSchema
	// newest is the highest schema version known for each stored name.
	newest map[string]int
	// names maps each name that may be stored to the names of the
	// current events it is read as.
	names map[string][]string
}

// buildHistory checks the upcasters and indexes them: no two from one
// shape, none from an event's current shape, and every chain ends at a
// registered event's current version without a cycle.
func (t *Type[S, ID]) buildHistory(ups []*upcastDef) []error {
	var errs []error
	h := history{
		upcasts:  make(map[EventSchema]*upcastDef),
		oldTypes: make(map[reflect.Type]EventSchema),
		newest:   make(map[string]int),
		names:    make(map[string][]string),
	}
	isCurrent := func(s EventSchema) bool {
		d := t.events[s.Name]
		return d != nil && d.version == s.Version
	}
	for _, d := range t.events {
		h.newest[d.name] = d.version
		h.names[d.name] = []string{d.name}
	}
	for _, u := range ups {
		switch {
		case u.from.Name == "" || u.to.Name == "" || len(u.from.Name) > sierradb.MaxEventNameLen:
			errs = append(errs, fmt.Errorf("aggregate: %s: event names must be 1 to 255 bytes", u.desc))
		case u.from.Version < 1 || u.to.Version < 1:
			errs = append(errs, fmt.Errorf("aggregate: %s: schema versions start at 1", u.desc))
		case u.from == u.to:
			errs = append(errs, fmt.Errorf("aggregate: %s: an upcaster must change the name or the version", u.desc))
		case h.upcasts[u.from] != nil:
			errs = append(errs, fmt.Errorf("aggregate: two upcasters read %s: %s and %s", u.from, h.upcasts[u.from].desc, u.desc))
		case isCurrent(u.from):
			errs = append(errs, fmt.Errorf("aggregate: %s: %s is the current shape of %s, which is read as it is; give the old shape another version", u.desc, u.from, t.events[u.from.Name].typ))
		default:
			h.upcasts[u.from] = u
			if u.in != nil {
				h.oldTypes[u.in] = u.from
			}
		}
	}
	for from := range h.upcasts {
		seen := map[EventSchema]bool{from: true}
		at := from
		for !isCurrent(at) {
			u := h.upcasts[at]
			if u == nil {
				errs = append(errs, fmt.Errorf("aggregate: the upcasters from %s lead to %s, which is neither the current shape of an event registered with On nor read by another upcaster", from, at))
				break
			}
			if seen[u.to] {
				errs = append(errs, fmt.Errorf("aggregate: the upcasters from %s go round in a circle at %s", from, u.to))
				break
			}
			seen[u.to] = true
			at = u.to
		}
		if isCurrent(at) {
			h.newest[from.Name] = max(h.newest[from.Name], from.Version)
			if !slices.Contains(h.names[from.Name], at.Name) {
				h.names[from.Name] = append(h.names[from.Name], at.Name)
			}
		}
	}
	for _, ns := range h.names {
		slices.Sort(ns)
	}
	t.history = h
	return errs
}

// decodeStored reads a stored payload of the given name and schema version
// into the current event type, through the upcasters.
func (t *Type[S, ID]) decodeStored(name string, version int, payload []byte) (Event, error) {
	if d := t.events[name]; d != nil && d.version == version {
		return d.decode(t.format, payload, name)
	}
	at := EventSchema{name, version}
	if err := t.checkKnown(at); err != nil {
		return nil, err
	}
	return t.upcast(&shape{schema: at, payload: payload, wrapped: name})
}

// checkKnown reports a stored shape that no event or upcaster reads.
func (t *Type[S, ID]) checkKnown(at EventSchema) error {
	if t.history.upcasts[at] != nil {
		return nil
	}
	newest, ok := t.history.newest[at.Name]
	switch {
	case !ok:
		return fmt.Errorf("%w: %q is not an event of %s (register it with On, or an upcaster from it)", ErrUnknownEvent, at.Name, t.category)
	case at.Version > newest:
		return &EventTooNewError{Name: at.Name, SchemaVersion: at.Version, Known: newest}
	}
	return fmt.Errorf("%w: no upcaster reads %s; register one with aggregate.Upcast, UpcastFields or Rename", ErrUnknownEvent, at)
}

// upcast runs the upcasters from s's shape to the current event type.
func (t *Type[S, ID]) upcast(s *shape) (Event, error) {
	for {
		if d := t.events[s.schema.Name]; d != nil && d.version == s.schema.Version {
			if s.value != nil && reflect.TypeOf(s.value) == d.typ {
				return s.value.(Event), nil
			}
			if err := s.encoded(t.format); err != nil {
				return nil, err
			}
			return d.decode(t.format, s.payload, s.wrapped)
		}
		// Define made sure that every chain ends at a current event.
		u := t.history.upcasts[s.schema]
		if err := runUpcaster(u, t.format, s); err != nil {
			return nil, &UpcastError{From: u.from, To: u.to, Upcaster: u.desc, Err: err}
		}
	}
}

// runUpcaster runs one upcaster, turning a panic into an error matching
// ErrPanic.
func runUpcaster(u *upcastDef, f codec.Format, s *shape) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: %v", ErrPanic, v)
		}
	}()
	return u.run(f, s)
}

// current returns a given event in its current shape: itself when it is of
// a registered event type, else upcast when it is of an upcaster's old type.
func (t *Type[S, ID]) current(ev Event) (Event, error) {
	typ := reflect.TypeOf(ev)
	if _, ok := t.eventTypes[typ]; ok {
		return ev, nil
	}
	from, ok := t.history.oldTypes[typ]
	if !ok {
		return nil, fmt.Errorf("aggregate: event type %T is not registered in %q: register it with aggregate.On: %w", ev, t.category, ErrUnknownEvent)
	}
	return t.upcast(&shape{schema: from, value: ev})
}

// StoredEventNames maps every event name that may be stored in the type's
// streams to the names of the current event types it is read as: each
// current name to itself, and each name an upcaster reads to the names its
// chains end at (several when versions of one name went different ways).
// Projections use it to know which stored events to decode.
func (t *Type[S, ID]) StoredEventNames() map[string][]string {
	out := make(map[string][]string, len(t.history.names))
	for k, v := range t.history.names {
		out[k] = slices.Clone(v)
	}
	return out
}

// UpcastStored returns a stored event of this type in its current shape:
// the current name, a payload re-encoded from the current event type, and
// metadata with the current schema version. It is meant for consumers that
// read stored events without decoding them, such as the Pub/Sub adapter
// (sierradb/pubsub's SubscriberConfig.Upcast). Events of other categories,
// events whose name the type does not know and events already in their
// current shape are returned as they are. A shape that cannot be upcast
// gives an [*EventDecodeError], as [Type.DecodeEvent] would.
func (t *Type[S, ID]) UpcastStored(ev sierradb.Event) (sierradb.Event, error) {
	if !strings.HasPrefix(ev.StreamID, t.category+"-") {
		return ev, nil
	}
	if _, ok := t.history.names[ev.Name]; !ok {
		return ev, nil
	}
	m, err := codec.DecodeMetadata(ev.Metadata)
	if err != nil {
		return ev, &EventDecodeError{StreamID: ev.StreamID, Version: ev.StreamVersion, Name: ev.Name, SchemaVersion: 1, Err: err}
	}
	if d := t.events[ev.Name]; d != nil && d.version == m.SchemaVersion() {
		return ev, nil
	}
	fail := func(err error) (sierradb.Event, error) {
		return ev, &EventDecodeError{StreamID: ev.StreamID, Version: ev.StreamVersion, Name: ev.Name, SchemaVersion: m.SchemaVersion(), Err: err}
	}
	e, err := t.decodeStored(ev.Name, m.SchemaVersion(), ev.Payload)
	if err != nil {
		return fail(err)
	}
	name, payload, err := t.EncodeEvent(e)
	if err != nil {
		return fail(err)
	}
	m.EventVersion = t.events[name].version
	md, err := codec.EncodeMetadata(m)
	if err != nil {
		return fail(err)
	}
	ev.Name, ev.Payload, ev.Metadata = name, payload, md
	return ev, nil
}

// encodeStored encodes a new event with the metadata it is stored with:
// metaBytes, or meta with the event's schema version when it is above 1.
func (t *Type[S, ID]) encodeStored(ev Event, meta codec.Metadata, metaBytes []byte) (string, []byte, []byte, error) {
	name, payload, err := t.EncodeEvent(ev)
	if err != nil {
		return "", nil, nil, err
	}
	v := t.events[name].version
	if v <= 1 {
		return name, payload, metaBytes, nil
	}
	meta.EventVersion = v
	md, err := codec.EncodeMetadata(meta)
	if err != nil {
		return "", nil, nil, err
	}
	return name, payload, md, nil
}
