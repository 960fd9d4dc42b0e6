package codec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/fxamacker/cbor/v2"
)

// fieldsDecMode decodes generic values with string-keyed maps, as JSON
// does, so that one upcaster reads nested maps the same way in both formats.
var fieldsDecMode = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		MaxNestedLevels:  64,
		MaxArrayElements: 1 << 20,
		MaxMapPairs:      1 << 20,
		IndefLength:      cbor.IndefLengthAllowed,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		DefaultMapType:   reflect.TypeFor[map[string]any](),
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// DecodePayloadFields checks that b carries the variant name and returns
// its fields as generic values, for upcasters that rewrite old shapes
// without a Go type: maps are map[string]any and arrays []any; CBOR
// integers are uint64 (or int64 when negative), JSON numbers json.Number.
// A unit variant (the bare name) has no fields: an empty map.
func DecodePayloadFields(f Format, b []byte, name string) (map[string]any, error) {
	got, inner, err := splitPayload(f, b)
	if err != nil {
		return nil, err
	}
	if got != name {
		return nil, fmt.Errorf("%w: variant %q, want %q", ErrInvalidPayload, got, name)
	}
	fields := map[string]any{}
	if inner == nil {
		return fields, nil
	}
	if f == JSON {
		dec := json.NewDecoder(bytes.NewReader(inner))
		dec.UseNumber()
		err = dec.Decode(&fields)
	} else {
		err = fieldsDecMode.Unmarshal(inner, &fields)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: the fields are not a map: %v", ErrInvalidPayload, name, err)
	}
	if fields == nil { // a null value
		fields = map[string]any{}
	}
	return fields, nil
}
