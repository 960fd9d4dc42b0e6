package resp3

import (
	"errors"
	"fmt"
	"strconv"
)

// Type is the leading byte of a RESP3 frame.
type Type byte

// The RESP3 frame types.
const (
	SimpleString Type = '+'
	SimpleError  Type = '-'
	BlobString   Type = '$'
	Integer      Type = ':'
	Double       Type = ','
	Boolean      Type = '#'
	Null         Type = '_'
	BigNumber    Type = '('
	BlobError    Type = '!'
	Verbatim     Type = '='
	Array        Type = '*'
	Map          Type = '%'
	Set          Type = '~'
	Push         Type = '>'
	Attribute    Type = '|'
)

// String returns a readable name for the type.
func (t Type) String() string {
	switch t {
	case SimpleString:
		return "simple string"
	case SimpleError:
		return "simple error"
	case BlobString:
		return "blob string"
	case Integer:
		return "integer"
	case Double:
		return "double"
	case Boolean:
		return "boolean"
	case Null:
		return "null"
	case BigNumber:
		return "big number"
	case BlobError:
		return "blob error"
	case Verbatim:
		return "verbatim string"
	case Array:
		return "array"
	case Map:
		return "map"
	case Set:
		return "set"
	case Push:
		return "push"
	case Attribute:
		return "attribute"
	}
	return fmt.Sprintf("type %q", byte(t))
}

// Value is one decoded frame.
//
// Str holds the bytes of every string-like type (simple and blob strings,
// errors, the text of a verbatim string, the digits of a big number). Int holds
// an integer, Float a double, Bool a boolean. Elems holds the elements of an
// array, set or push; for a map it holds keys and values alternately
// (key0, value0, key1, value1, ...).
type Value struct {
	Type   Type
	Str    []byte
	Int    int64
	Float  float64
	Bool   bool
	Format string // the three-letter format of a verbatim string
	Elems  []Value
}

// IsString reports whether v carries text: a simple, blob or verbatim string.
func (v Value) IsString() bool {
	return v.Type == SimpleString || v.Type == BlobString || v.Type == Verbatim
}

// IsError reports whether v is a simple or blob error.
func (v Value) IsError() bool { return v.Type == SimpleError || v.Type == BlobError }

// Len returns the number of entries of an aggregate: elements of an array,
// set or push, pairs of a map.
func (v Value) Len() int {
	if v.Type == Map || v.Type == Attribute {
		return len(v.Elems) / 2
	}
	return len(v.Elems)
}

// MapGet returns the value stored under a string key in a map, and whether
// the key was present.
func (v Value) MapGet(key string) (Value, bool) {
	if v.Type != Map {
		return Value{}, false
	}
	for i := 0; i+1 < len(v.Elems); i += 2 {
		k := v.Elems[i]
		if k.IsString() && string(k.Str) == key {
			return v.Elems[i+1], true
		}
	}
	return Value{}, false
}

// String renders v for debugging and test failure messages.
func (v Value) String() string {
	switch v.Type {
	case SimpleString, BlobString, Verbatim, BigNumber:
		return strconv.Quote(string(v.Str))
	case SimpleError, BlobError:
		return "ERR(" + strconv.Quote(string(v.Str)) + ")"
	case Integer:
		return strconv.FormatInt(v.Int, 10)
	case Double:
		return strconv.FormatFloat(v.Float, 'g', -1, 64)
	case Boolean:
		return strconv.FormatBool(v.Bool)
	case Null:
		return "null"
	case Map, Attribute:
		s := "{"
		for i := 0; i+1 < len(v.Elems); i += 2 {
			if i > 0 {
				s += ", "
			}
			s += v.Elems[i].String() + ": " + v.Elems[i+1].String()
		}
		return s + "}"
	default:
		s := string(v.Type) + "["
		for i, e := range v.Elems {
			if i > 0 {
				s += ", "
			}
			s += e.String()
		}
		return s + "]"
	}
}

// ErrProtocol is matched by every [*ProtocolError].
var ErrProtocol = errors.New("resp3: protocol error")

// ProtocolError reports a malformed frame.
type ProtocolError struct {
	Msg string
}

func (e *ProtocolError) Error() string { return "resp3: protocol error: " + e.Msg }

// Is reports whether target is [ErrProtocol].
func (e *ProtocolError) Is(target error) bool { return target == ErrProtocol }

func protoErrorf(format string, args ...any) error {
	return &ProtocolError{Msg: fmt.Sprintf(format, args...)}
}
