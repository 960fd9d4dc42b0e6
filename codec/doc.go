// Package codec reads and writes esmill's event data format, which is
// kameo_es's, so that Go and Rust services can share one SierraDB:
//
//   - An event payload is CBOR in serde's externally tagged enum layout: a
//     map with one key, the event name, whose value is the event's fields
//     ({"MoneyDeposited": {"amount": 100}}). An event type without fields
//     is a field-less struct variant ({"Frozen": {}}, serde's `Frozen {}`);
//     one marked with [Unit] is a unit variant, the bare name as a text
//     string ("Closed", serde's `Closed`). Both forms are read into either
//     kind of type. See [EncodePayload] and [DecodePayload].
//   - Event metadata is the CBOR map {ccmd, ceid, csid, csv, data}, written
//     as an indefinite-length map like serde's flattened struct, every key
//     omitted when empty, the causing event id as a 16-byte byte string.
//     esmill adds keys kameo_es ignores (see [Metadata]): the correlation
//     id (cid), the command message id (cmid) and the event's schema
//     version (esv, written only above 1; absent means 1).
//
// JSON is available as an alternative payload format ([JSON]); metadata is
// always CBOR.
package codec
