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

// isUnit reports whether v is a struct without fields, which serde writes
// as a unit variant: the bare name.
func isUnit(v any) bool {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t != nil && t.Kind() == reflect.Struct && t.NumField() == 0
}

// EncodePayload writes v as the variant name of an externally tagged enum:
// {name: v} or, for a struct without fields, the bare name.
func EncodePayload(f Format, name string, v any) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	switch f {
	case JSON:
		if isUnit(v) {
			b, err = json.Marshal(name)
		} else {
			b, err = json.Marshal(map[string]any{name: v})
		}
	default:
		if isUnit(v) {
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
// value into v (a pointer). A unit variant leaves v as it is.
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
