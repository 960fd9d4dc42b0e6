package codec

import (
	"bytes"
	"errors"
	"fmt"
	"math"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/uuid"
)

// Metadata is the envelope stored in every event's metadata.
type Metadata struct {
	// Command is the name of the command that produced the event (ccmd).
	Command string
	// Causation names the event that caused the command, if any
	// (ceid, csid, csv).
	Causation *Causation
	// Data is the user's metadata as raw CBOR (data); nil when absent.
	Data cbor.RawMessage
	// CorrelationID ties the event to a conversation across services
	// (cid). An esmill extension; kameo_es ignores it.
	CorrelationID string
	// CommandID is the id of the command message that produced the event
	// (cmid), so that a redelivered message is recognised. An esmill
	// extension; kameo_es ignores it.
	CommandID string
	// EventVersion is the schema version of the event's payload shape
	// (esv): 0 and 1 both mean version 1, the version of every event
	// kameo_es and esmill wrote before versioning, and neither is written.
	// An esmill extension; kameo_es ignores it.
	EventVersion int
	// TraceParent and TraceState are the W3C trace context of the span
	// that wrote the event (tp, tst), so that a consumer in any process
	// continues the trace of the command that caused it. esmill
	// extensions; kameo_es ignores them.
	TraceParent string
	TraceState  string
}

// Causation identifies the event that caused a command.
type Causation struct {
	EventID       uuid.UUID
	StreamID      string
	StreamVersion uint64
}

// IsEmpty reports whether m carries nothing.
func (m Metadata) IsEmpty() bool {
	return m.Command == "" && m.Causation == nil && len(m.Data) == 0 && m.CorrelationID == "" && m.CommandID == "" && m.EventVersion <= 1 && m.TraceParent == "" && m.TraceState == ""
}

// SchemaVersion returns the event's schema version: [Metadata.EventVersion],
// or 1 when it is absent.
func (m Metadata) SchemaVersion() int { return max(m.EventVersion, 1) }

// ErrInvalidMetadata is matched by every error of [DecodeMetadata].
var ErrInvalidMetadata = errors.New("codec: invalid event metadata")

// Metadata keys.
const (
	keyCommand      = "ccmd"
	keyEventID      = "ceid"
	keyStreamID     = "csid"
	keyVersion      = "csv"
	keyData         = "data"
	keyCorrelation  = "cid"
	keyCommandID    = "cmid"
	keyEventVersion = "esv"
	keyTraceParent  = "tp"
	keyTraceState   = "tst"
)

var encMode = func() cbor.EncMode {
	em, err := cbor.EncOptions{}.EncMode()
	if err != nil {
		panic(err)
	}
	return em
}()

var decMode = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		MaxNestedLevels:  64,
		MaxArrayElements: 1 << 20,
		MaxMapPairs:      1 << 20,
		IndefLength:      cbor.IndefLengthAllowed,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// EncodeMetadata writes m as kameo_es does: an indefinite-length CBOR map
// with ccmd, ceid, csid, csv and data in that order, each omitted when
// empty, followed by esmill's own keys (cid, cmid, esv, tp, tst). Empty metadata
// encodes to no bytes, which SierraDB stores as empty metadata.
func EncodeMetadata(m Metadata) ([]byte, error) {
	if m.IsEmpty() {
		return nil, nil
	}
	var buf bytes.Buffer
	enc := encMode.NewEncoder(&buf)
	if err := enc.StartIndefiniteMap(); err != nil {
		return nil, err
	}
	put := func(k string, v any) error {
		if err := enc.Encode(k); err != nil {
			return err
		}
		return enc.Encode(v)
	}
	var err error
	if m.Command != "" {
		err = errors.Join(err, put(keyCommand, m.Command))
	}
	if c := m.Causation; c != nil {
		err = errors.Join(err, put(keyEventID, c.EventID[:]), put(keyStreamID, c.StreamID), put(keyVersion, c.StreamVersion))
	}
	if len(m.Data) > 0 {
		err = errors.Join(err, put(keyData, m.Data))
	}
	if m.CorrelationID != "" {
		err = errors.Join(err, put(keyCorrelation, m.CorrelationID))
	}
	if m.CommandID != "" {
		err = errors.Join(err, put(keyCommandID, m.CommandID))
	}
	if m.EventVersion > 1 {
		err = errors.Join(err, put(keyEventVersion, m.EventVersion))
	}
	if m.TraceParent != "" {
		err = errors.Join(err, put(keyTraceParent, m.TraceParent))
	}
	if m.TraceState != "" {
		err = errors.Join(err, put(keyTraceState, m.TraceState))
	}
	if err != nil {
		return nil, fmt.Errorf("codec: encode metadata: %w", err)
	}
	if err := enc.EndIndefinite(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DecodeMetadata reads metadata written by esmill or kameo_es. Empty input
// is empty metadata. Unknown keys are ignored; a CBOR null under data counts
// as absent. Malformed input gives an error matching [ErrInvalidMetadata].
func DecodeMetadata(b []byte) (Metadata, error) {
	var m Metadata
	if len(b) == 0 {
		return m, nil
	}
	var raw map[string]cbor.RawMessage
	if err := decMode.Unmarshal(b, &raw); err != nil {
		return m, fmt.Errorf("%w: %v", ErrInvalidMetadata, err)
	}
	fail := func(key string, err error) (Metadata, error) {
		return Metadata{}, fmt.Errorf("%w: key %s: %v", ErrInvalidMetadata, key, err)
	}
	if v, ok := raw[keyCommand]; ok {
		if err := decMode.Unmarshal(v, &m.Command); err != nil {
			return fail(keyCommand, err)
		}
	}
	eid, hasEID := raw[keyEventID]
	sid, hasSID := raw[keyStreamID]
	ver, hasVer := raw[keyVersion]
	if hasEID || hasSID || hasVer {
		if !hasEID || !hasSID || !hasVer {
			return fail(keyEventID, errors.New("causation needs ceid, csid and csv together"))
		}
		var c Causation
		var idb []byte
		if err := decMode.Unmarshal(eid, &idb); err != nil {
			// A human-readable serializer would have written a string.
			var s string
			if err2 := decMode.Unmarshal(eid, &s); err2 != nil {
				return fail(keyEventID, err)
			}
			id, err := uuid.Parse(s)
			if err != nil {
				return fail(keyEventID, err)
			}
			idb = id[:]
		}
		if len(idb) != 16 {
			return fail(keyEventID, fmt.Errorf("%d bytes, want 16", len(idb)))
		}
		copy(c.EventID[:], idb)
		if err := decMode.Unmarshal(sid, &c.StreamID); err != nil {
			return fail(keyStreamID, err)
		}
		if err := decMode.Unmarshal(ver, &c.StreamVersion); err != nil {
			return fail(keyVersion, err)
		}
		m.Causation = &c
	}
	if v, ok := raw[keyData]; ok && !isNull(v) {
		m.Data = v
	}
	if v, ok := raw[keyCorrelation]; ok {
		if err := decMode.Unmarshal(v, &m.CorrelationID); err != nil {
			return fail(keyCorrelation, err)
		}
	}
	if v, ok := raw[keyCommandID]; ok {
		if err := decMode.Unmarshal(v, &m.CommandID); err != nil {
			return fail(keyCommandID, err)
		}
	}
	if v, ok := raw[keyEventVersion]; ok {
		var n uint32
		if err := decMode.Unmarshal(v, &n); err != nil {
			return fail(keyEventVersion, fmt.Errorf("the event's schema version must be a positive integer: %v", err))
		}
		if n == 0 || n > math.MaxInt32 {
			return fail(keyEventVersion, fmt.Errorf("the event's schema version must be a positive integer, not %d", n))
		}
		m.EventVersion = int(n)
	}
	if v, ok := raw[keyTraceParent]; ok {
		if err := decMode.Unmarshal(v, &m.TraceParent); err != nil {
			return fail(keyTraceParent, err)
		}
	}
	if v, ok := raw[keyTraceState]; ok {
		if err := decMode.Unmarshal(v, &m.TraceState); err != nil {
			return fail(keyTraceState, err)
		}
	}
	return m, nil
}

func isNull(b cbor.RawMessage) bool { return len(b) == 1 && (b[0] == 0xf6 || b[0] == 0xf7) }

// EncodeData encodes a user metadata value for [Metadata.Data].
func EncodeData(v any) (cbor.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("codec: encode metadata data: %w", err)
	}
	return b, nil
}

// DecodeData decodes [Metadata.Data] into v. Absent data leaves v as it is.
func (m Metadata) DecodeData(v any) error {
	if len(m.Data) == 0 {
		return nil
	}
	if err := decMode.Unmarshal(m.Data, v); err != nil {
		return fmt.Errorf("%w: data: %v", ErrInvalidMetadata, err)
	}
	return nil
}
