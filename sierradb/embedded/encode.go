package embedded

import "github.com/esmill/esmill/sierradb/internal/resp3"

// writeEvent writes the event map of EGET, ESCAN, EPSCAN and subscription
// pushes: 11 entries with simple-string keys in SierraDB's order.
func writeEvent(w *resp3.Writer, e *event) {
	w.WriteMapHeader(11)
	w.WriteSimpleString("event_id")
	w.WriteSimpleString(e.id.String())
	w.WriteSimpleString("partition_key")
	w.WriteSimpleString(e.key.String())
	w.WriteSimpleString("partition_id")
	w.WriteInt(int64(e.pid))
	w.WriteSimpleString("transaction_id")
	w.WriteSimpleString(e.txID.String())
	w.WriteSimpleString("partition_sequence")
	w.WriteInt(int64(e.seq))
	w.WriteSimpleString("stream_version")
	w.WriteInt(int64(e.version))
	w.WriteSimpleString("timestamp")
	w.WriteInt(e.timestampMillis())
	w.WriteSimpleString("stream_id")
	w.WriteBlobString(e.streamID)
	w.WriteSimpleString("event_name")
	w.WriteBlobString(e.name)
	w.WriteSimpleString("metadata")
	w.WriteBlob(e.metadata)
	w.WriteSimpleString("payload")
	w.WriteBlob(e.payload)
}

// writeScan writes the {has_more, events} reply of ESCAN and EPSCAN.
func writeScan(w *resp3.Writer, hasMore bool, evs []*event) {
	w.WriteMapHeader(2)
	w.WriteSimpleString("has_more")
	w.WriteBool(hasMore)
	w.WriteSimpleString("events")
	w.WriteArrayHeader(len(evs))
	for _, e := range evs {
		writeEvent(w, e)
	}
}
