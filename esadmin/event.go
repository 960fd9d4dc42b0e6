package esadmin

import (
	"encoding/hex"
	"encoding/json"
	"reflect"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/uuid"

	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/sierradb"
)

// Event is an event decoded for people and scripts: its payload and
// metadata as JSON values, whichever program wrote it (esmill or
// kameo_es: the payload in CBOR or JSON, the metadata in kameo_es's CBOR
// envelope).
type Event struct {
	ID            uuid.UUID  `json:"id"`
	StreamID      string     `json:"stream_id"`
	StreamVersion uint64     `json:"stream_version"`
	Name          string     `json:"name"`
	Partition     uint16     `json:"partition"`
	Sequence      uint64     `json:"sequence"`
	Timestamp     *time.Time `json:"timestamp,omitempty"`
	TransactionID *uuid.UUID `json:"transaction_id,omitempty"`
	// PayloadFormat is "cbor", "json", or "raw" when the payload decodes
	// as neither (Payload is then its bytes in hex).
	PayloadFormat string    `json:"payload_format"`
	Payload       any       `json:"payload"`
	Metadata      *Metadata `json:"metadata,omitempty"`
	// MetadataError says why the metadata did not decode (MetadataHex
	// then holds it).
	MetadataError string `json:"metadata_error,omitempty"`
	MetadataHex   string `json:"metadata_hex,omitempty"`
}

// Metadata is an event's metadata envelope (codec.Metadata) as JSON.
type Metadata struct {
	Command       string     `json:"command,omitempty"`
	Causation     *Causation `json:"causation,omitempty"`
	CorrelationID string     `json:"correlation_id,omitempty"`
	CommandID     string     `json:"command_id,omitempty"`
	EventVersion  int        `json:"event_version,omitempty"`
	// TraceID is the trace id of TraceParent, the W3C trace context of
	// the span that wrote the event.
	TraceID     string `json:"trace_id,omitempty"`
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`
	Data        any    `json:"data,omitempty"`
}

// Causation names the event that caused the command that wrote an event.
type Causation struct {
	EventID       uuid.UUID `json:"event_id"`
	StreamID      string    `json:"stream_id"`
	StreamVersion uint64    `json:"stream_version"`
}

var genericCBOR = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		MaxNestedLevels: 64, IndefLength: cbor.IndefLengthAllowed,
		DefaultMapType: reflect.TypeFor[map[string]any](),
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// DecodeEvent decodes ev's payload and metadata.
func DecodeEvent(ev sierradb.Event) Event {
	out := Event{
		ID: ev.ID, StreamID: ev.StreamID, StreamVersion: ev.StreamVersion, Name: ev.Name,
		Partition: ev.PartitionID, Sequence: ev.PartitionSequence,
	}
	if !ev.Timestamp.IsZero() {
		ts := ev.Timestamp.UTC()
		out.Timestamp = &ts
	}
	if ev.TransactionID != uuid.Nil {
		id := ev.TransactionID
		out.TransactionID = &id
	}
	out.PayloadFormat, out.Payload = decodePayload(ev.Payload)
	if len(ev.Metadata) > 0 {
		m, err := codec.DecodeMetadata(ev.Metadata)
		if err != nil {
			out.MetadataError, out.MetadataHex = err.Error(), hex.EncodeToString(ev.Metadata)
		} else {
			out.Metadata = metadataJSON(m)
		}
	}
	return out
}

// decodeParked decodes a parked event's copy.
func decodeParked(p readmodel.ParkedEvent) Event {
	return DecodeEvent(sierradb.Event{
		ID: p.EventID, StreamID: p.StreamID, StreamVersion: p.StreamVersion, Name: p.Name,
		PartitionID: p.Partition, PartitionSequence: p.Sequence, Payload: p.Payload, Metadata: p.Metadata,
	})
}

func decodePayload(b []byte) (string, any) {
	if len(b) == 0 {
		return "raw", ""
	}
	if (b[0] == '{' || b[0] == '"' || b[0] == '[') && json.Valid(b) {
		return "json", json.RawMessage(b)
	}
	var v any
	if err := genericCBOR.Unmarshal(b, &v); err == nil {
		if _, err := json.Marshal(v); err == nil {
			return "cbor", v
		}
	}
	return "raw", hex.EncodeToString(b)
}

func metadataJSON(m codec.Metadata) *Metadata {
	out := &Metadata{
		Command: m.Command, CorrelationID: m.CorrelationID, CommandID: m.CommandID, EventVersion: m.EventVersion,
		TraceParent: m.TraceParent, TraceState: m.TraceState,
	}
	if c := m.Causation; c != nil {
		out.Causation = &Causation{EventID: c.EventID, StreamID: c.StreamID, StreamVersion: c.StreamVersion}
	}
	if parts := strings.Split(m.TraceParent, "-"); len(parts) == 4 {
		out.TraceID = parts[1]
	}
	if len(m.Data) > 0 {
		var v any
		if err := genericCBOR.Unmarshal(m.Data, &v); err == nil {
			if _, err := json.Marshal(v); err == nil {
				out.Data = v
			}
		}
		if out.Data == nil {
			out.Data = hex.EncodeToString(m.Data)
		}
	}
	return out
}
