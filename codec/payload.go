package codec

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/fxamacker/cbor/v2"
)

// Format is a payload encoding.
type Format uint8

const (
	// CBOR is the default, and kameo_es's format.
	CBOR Format = iota
	// JSON writes the same externally tagged layout as JSON.
	JSON
)

func (f Format) String() string {
	if f == JSON {
		return "json"
	}
	return "cbor"
}

// ErrInvalidPayload is matched by every decoding error of a payload.
var ErrInvalidPayload = errors.New("codec: invalid event payload")

// Unit marks an event type as a serde unit variant: embed it in a struct
// without other fields, and the event is written as the bare name
// ("Closed"), as serde writes `Closed` in a Rust enum. Without the marker
// an event type without fields is written as a field-less struct variant,
// {"Frozen": {}}, as serde writes `Frozen {}`:
//
//	type Frozen struct{}              // {"Frozen": {}}
//	type Closed struct{ codec.Unit } // "Closed"
//
// Both forms are read into either kind of type. kameo_es (serde) reads
// the map form as a struct variant and as a unit variant, but the bare
// name only as a unit variant, so the map form is the safe default; mark a
// type only to write exactly what serde writes for a unit variant.
type Unit struct{}

// UnitVariant is the marker method [Unit] gives the types that embed it.
func (Unit) UnitVariant() {}

// UnitVariant is implemented by event types marked as unit variants (see
// [Unit]).
type UnitVariant interface{ UnitVariant() }

// ErrUnitWithFields is matched by the error of [EncodePayload] for a type
// marked as a unit variant that has fields: a unit variant carries nothing,
// so they would be lost.
var ErrUnitWithFields = errors.New("codec: a unit variant has fields")

// isUnit reports whether v is marked as a unit variant, which serde
// writes as the bare name. The marked type must carry no data.
func isUnit(v any) (bool, error) {
	if _, ok := v.(UnitVariant); !ok {
		return false, nil
	}
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Size() != 0 {
		return false, fmt.Errorf("%w: %s is marked with codec.Unit but carries data; drop the marker or the fields", ErrUnitWithFields, t)
	}
	return true, nil
}

// EncodePayload writes v as the variant name of an externally tagged enum:
// {name: v}, also for a struct without fields ({name: {}}), or the bare
// name for a type marked as a unit variant (see [Unit]).
func EncodePayload(f Format, name string, v any) ([]byte, error) {
	unit, err := isUnit(v)
	if err != nil {
		return nil, err
	}
	var b []byte
	switch f {
	case JSON:
		if unit {
			b, err = json.Marshal(name)
		} else {
			b, err = json.Marshal(map[string]any{name: v})
		}
	default:
		if unit {
			b, err = encMode.Marshal(name)
		} else {
			b, err = encMode.Marshal(map[string]any{name: v})
		}
	}
	if err != nil {
		return nil, fmt.Errorf("codec: encode %s payload: %w", name, err)
	}
	return b, nil
}

// PayloadName returns the variant name a payload carries.
func PayloadName(f Format, b []byte) (string, error) {
	name, _, err := splitPayload(f, b)
	return name, err
}

// splitPayload returns the variant name and the raw inner value (nil for a
// unit variant).
func splitPayload(f Format, b []byte) (string, []byte, error) {
	if f == JSON {
		var s string
		if json.Unmarshal(b, &s) == nil {
			return s, nil, nil
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			return "", nil, fmt.Errorf("%w: %v", ErrInvalidPayload, err)
		}
		if len(m) != 1 {
			return "", nil, fmt.Errorf("%w: a map of %d entries, want one", ErrInvalidPayload, len(m))
		}
		for k, v := range m {
			return k, v, nil
		}
	}
	var s string
	if decMode.Unmarshal(b, &s) == nil {
		return s, nil, nil
	}
	var m map[string]cbor.RawMessage
	if err := decMode.Unmarshal(b, &m); err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrInvalidPayload, err)
	}
	if len(m) != 1 {
		return "", nil, fmt.Errorf("%w: a map of %d entries, want one", ErrInvalidPayload, len(m))
	}
	for k, v := range m {
		return k, v, nil
	}
	panic("unreachable")
}

// DecodePayload checks that b carries the variant name and decodes its
// value into v (a pointer). A unit variant (the bare name) leaves v as it
// is: both forms are read whatever v's type.
func DecodePayload(f Format, b []byte, name string, v any) error {
	got, inner, err := splitPayload(f, b)
	if err != nil {
		return err
	}
	if got != name {
		return fmt.Errorf("%w: variant %q, want %q", ErrInvalidPayload, got, name)
	}
	if inner == nil {
		return nil
	}
	if f == JSON {
		err = json.Unmarshal(inner, v)
	} else {
		err = decMode.Unmarshal(inner, v)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalidPayload, name, err)
	}
	return nil
}

// Marshal encodes a value (a command, a snapshot) in format f.
func Marshal(f Format, v any) ([]byte, error) {
	if f == JSON {
		return json.Marshal(v)
	}
	return encMode.Marshal(v)
}

// Unmarshal decodes a value written by [Marshal].
func Unmarshal(f Format, b []byte, v any) error {
	if f == JSON {
		return json.Unmarshal(b, v)
	}
	return decMode.Unmarshal(b, v)
}
