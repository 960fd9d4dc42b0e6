package aggregate

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/esmill/esmill/codec"
)

// VersionedEvent is an event type that declares the schema version of its
// shape. An event type without the method has version 1, as has every event
// stored before it declared one. Bump the version when the shape changes
// in a way old payloads do not decode into (a field renamed, its meaning or
// type changed), and register an upcaster from the previous shape ([Upcast],
// [UpcastFields]). Adding an optional field needs no new version.
type VersionedEvent interface {
	Event
	EventVersion() int
}

// eventVersion returns an event type's schema version.
func eventVersion(e Event) int {
	if v, ok := e.(VersionedEvent); ok {
		return v.EventVersion()
	}
	return 1
}

// EventSchema names one stored shape of an event: the name it is stored
// under and its schema version.
type EventSchema struct {
	Name    string
	Version int
}

func (s EventSchema) String() string { return fmt.Sprintf("%s v%d", s.Name, s.Version) }

// Upcast registers an upcaster: a function that turns an event stored in an
// older shape, described by the Go type Old, into a newer shape New. Old
// and New are events: their EventName and EventVersion (1 without the
// method) say which stored shape each describes, so one upcaster can also
// rename an event (Old's name is the one it was stored under). Upcasters
// chain: Upcast(v1 → v2) and Upcast(v2 → v3) read a v1 event as v3. Every
// chain must end at an event type registered with [On], at its current
// version; [Define] checks this.
//
//	type OpenedV1 struct{ Owner string `cbor:"owner"` } // EventName "Opened", version 1
//	aggregate.Upcast[Account](func(o OpenedV1) (Opened, error) {
//		return Opened{Holder: o.Owner, Currency: "EUR"}, nil
//	})
//
// An error of f makes the event fail to decode (an [*UpcastError] inside an
// [*EventDecodeError]): the entity does not load, and a projection parks
// the event as poison.
func Upcast[S any, Old, New Event](f func(Old) (New, error)) Option[S] {
	return optionFunc[S](func(b *typeBuilder[S]) error {
		var old Old
		var nw New
		in, out := reflect.TypeOf(old), reflect.TypeOf(nw)
		if in == nil || out == nil {
			return errors.New("aggregate: Upcast needs concrete event types, not interfaces")
		}
		if f == nil {
			return fmt.Errorf("aggregate: Upcast from %s: nil function", in)
		}
		from := EventSchema{old.EventName(), eventVersion(old)}
		to := EventSchema{nw.EventName(), eventVersion(nw)}
		b.upcasts = append(b.upcasts, &upcastDef{
			from: from, to: to, in: in,
			desc: fmt.Sprintf("Upcast(%s → %s)", in, out),
			run: func(fm codec.Format, s *shape) error {
				o, ok := s.value.(Old)
				if !ok {
					if err := s.decodeInto(fm, &o); err != nil {
						return err
					}
				}
				n, err := f(o)
				if err != nil {
					return err
				}
				s.set(to, n)
				return nil
			},
		})
		return nil
	})
}

// UpcastFields registers an untyped upcaster from the stored shape from to
// the shape to, for changes that are easier to make on the payload's fields
// than with a Go type per old shape. f gets the event's fields as generic
// values and returns the new fields: maps are map[string]any, arrays
// []any; CBOR integers are uint64 or int64 and JSON numbers json.Number. A
// unit variant (the bare name) has no fields: an empty map.
//
//	aggregate.UpcastFields[Account](
//		aggregate.EventSchema{Name: "MoneyWithdrawn", Version: 1},
//		aggregate.EventSchema{Name: "MoneyWithdrawn", Version: 2},
//		func(f map[string]any) (map[string]any, error) { f["reason"] = "unknown"; return f, nil })
//
// It chains with [Upcast] and [Rename] like any upcaster.
func UpcastFields[S any](from, to EventSchema, f func(fields map[string]any) (map[string]any, error)) Option[S] {
	return optionFunc[S](func(b *typeBuilder[S]) error {
		if f == nil {
			return fmt.Errorf("aggregate: UpcastFields from %s: nil function", from)
		}
		b.upcasts = append(b.upcasts, &upcastDef{
			from: from, to: to,
			desc: fmt.Sprintf("UpcastFields(%s → %s)", from, to),
			run: func(fm codec.Format, s *shape) error {
				fields, err := s.fields(fm)
				if err != nil {
					return err
				}
				out, err := f(fields)
				if err != nil {
					return err
				}
				if out == nil {
					out = map[string]any{}
				}
				s.set(to, out)
				return nil
			},
		})
		return nil
	})
}

// Rename registers that the shape from is now called to.Name at schema
// version to.Version, with the same fields: the stored payload is read as
// it is, under its old name. Use it when only the name changed; [Upcast]
// renames too when the shape also changed.
//
//	aggregate.Rename[Account](
//		aggregate.EventSchema{Name: "MoneyAdded", Version: 1},
//		aggregate.EventSchema{Name: "MoneyDeposited", Version: 1})
func Rename[S any](from, to EventSchema) Option[S] {
	return optionFunc[S](func(b *typeBuilder[S]) error {
		b.upcasts = append(b.upcasts, &upcastDef{
			from: from, to: to,
			desc: fmt.Sprintf("Rename(%s → %s)", from, to),
			run: func(_ codec.Format, s *shape) error {
				s.schema = to
				return nil
			},
		})
		return nil
	})
}

// upcastDef is one registered upcaster.
type upcastDef struct {
	from, to EventSchema
	in       reflect.Type // the Go type of from, for typed upcasters
	desc     string       // how it was registered, for errors
	run      func(f codec.Format, s *shape) error
}

// shape is an event on its way through upcasters: a Go value of its
// current schema, or the stored payload, or both.
type shape struct {
	schema EventSchema
	// value is the event as a Go value (an event type, or the fields of
	// UpcastFields); nil while only the payload is known.
	value any
	// payload is the event's encoded form, its variant named wrapped
	// (which may be an older name than schema.Name after a Rename); nil
	// when it must be encoded from value.
	payload []byte
	wrapped string
}

// set replaces the shape's value after an upcaster ran.
func (s *shape) set(to EventSchema, v any) {
	s.schema, s.value, s.payload, s.wrapped = to, v, nil, ""
}

// encoded returns the payload, encoding the value if needed.
func (s *shape) encoded(f codec.Format) error {
	if s.payload != nil {
		return nil
	}
	b, err := codec.EncodePayload(f, s.schema.Name, s.value)
	if err != nil {
		return err
	}
	s.payload, s.wrapped = b, s.schema.Name
	return nil
}

// decodeInto decodes the shape into v, a pointer to another Go type.
func (s *shape) decodeInto(f codec.Format, v any) error {
	if err := s.encoded(f); err != nil {
		return err
	}
	return codec.DecodePayload(f, s.payload, s.wrapped, v)
}

// fields returns the shape as generic fields.
func (s *shape) fields(f codec.Format) (map[string]any, error) {
	if m, ok := s.value.(map[string]any); ok {
		return m, nil
	}
	if err := s.encoded(f); err != nil {
		return nil, err
	}
	return codec.DecodePayloadFields(f, s.payload, s.wrapped)
}
