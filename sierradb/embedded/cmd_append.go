package embedded

import (
	"strings"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// Option keywords of EAPPEND and EMAPPEND, and the names their repeat errors
// use.
var eventOptions = map[string]string{
	"EVENT_ID":         "event id",
	"PARTITION_KEY":    "partition key",
	"EXPECTED_VERSION": "expected version",
	"TIMESTAMP":        "timestamp",
	"PAYLOAD":          "payload",
	"METADATA":         "metadata",
}

// parseEventOptions reads the options of one event while the next argument
// is one of them. withKey allows PARTITION_KEY (EAPPEND only); for EMAPPEND
// any other token ends the event. It returns the partition key if given.
func parseEventOptions(a *args, ev *newEvent, withKey bool) (*uuid.UUID, error) {
	seen := make(map[string]bool, 6)
	var key *uuid.UUID
	for a.more() {
		v := a.v[a.i]
		kw := ""
		if isString(v) {
			kw = strings.ToUpper(string(v.Str))
		}
		what, isOpt := eventOptions[kw]
		if !isOpt || (kw == "PARTITION_KEY" && !withKey) {
			if withKey {
				return nil, a.end()
			}
			return key, nil // the next event starts here
		}
		a.i++
		if seen[kw] {
			return nil, alreadySpecified(what)
		}
		seen[kw] = true
		var err error
		switch kw {
		case "EVENT_ID":
			ev.id, err = a.uuidArg("event id")
			ev.hasID = true
		case "PARTITION_KEY":
			var k uuid.UUID
			k, err = a.uuidArg("partition key")
			key = &k
		case "EXPECTED_VERSION":
			ev.expected, err = a.expectedVersion()
		case "TIMESTAMP":
			ev.tsNanos, err = a.timestampNanos()
			ev.hasTS = true
		case "PAYLOAD":
			ev.payload, err = a.bytes("payload")
		case "METADATA":
			ev.metadata, err = a.bytes("metadata")
		}
		if err != nil {
			return nil, err
		}
	}
	return key, nil
}

// checkStrict applies strict versioning: any (also when omitted) and exists
// are rejected.
func (s *Server) checkStrict(e sierradb.ExpectedVersion) error {
	if s.cfg.RelaxedVersioning {
		return nil
	}
	switch {
	case e.IsAny():
		return cmdError(msgStrictAny)
	case e.IsExists():
		return cmdError(msgStrictExists)
	}
	return nil
}

// EAPPEND <stream_id> <event_name> [EVENT_ID id] [PARTITION_KEY key]
// [EXPECTED_VERSION ev] [TIMESTAMP ms] [PAYLOAD b] [METADATA b]
func cmdEappend(c *conn, a *args) error {
	sid, err := a.streamID()
	if err != nil {
		return err
	}
	name, err := a.str("event name")
	if err != nil {
		return err
	}
	ev := newEvent{streamID: sid, name: name}
	keyOpt, err := parseEventOptions(a, &ev, true)
	if err != nil {
		return err
	}
	if err := c.srv.checkStrict(ev.expected); err != nil {
		return err
	}
	key := sierradb.StreamPartitionKey(sid)
	if keyOpt != nil {
		key = *keyOpt
	}
	res, err := c.srv.store.append(key, []newEvent{ev}, c.srv.now(), msgEventIDHash)
	if err != nil {
		return err
	}
	e := res.events[0]
	c.write(func(w *resp3.Writer) {
		w.WriteMapHeader(6)
		w.WriteSimpleString("event_id")
		w.WriteSimpleString(e.id.String())
		w.WriteSimpleString("partition_key")
		w.WriteSimpleString(e.key.String())
		w.WriteSimpleString("partition_id")
		w.WriteInt(int64(e.pid))
		w.WriteSimpleString("partition_sequence")
		w.WriteInt(int64(e.seq))
		w.WriteSimpleString("stream_version")
		w.WriteInt(int64(e.version))
		w.WriteSimpleString("timestamp")
		w.WriteInt(e.timestampMillis())
	})
	return nil
}

// EMAPPEND <partition_key> <stream_id> <event_name> [EVENT_ID id]
// [EXPECTED_VERSION ev] [TIMESTAMP ms] [PAYLOAD b] [METADATA b]
// [<stream_id> <event_name> [options]]...
func cmdEmappend(c *conn, a *args) error {
	key, err := a.uuidArg("partition key")
	if err != nil {
		return err
	}
	var evs []newEvent
	for len(evs) == 0 || a.more() {
		sid, err := a.streamID()
		if err != nil {
			return err
		}
		name, err := a.str("event name")
		if err != nil {
			return err
		}
		ev := newEvent{streamID: sid, name: name}
		if _, err := parseEventOptions(a, &ev, false); err != nil {
			return err
		}
		evs = append(evs, ev)
	}
	for _, ev := range evs {
		if err := c.srv.checkStrict(ev.expected); err != nil {
			return err
		}
	}
	res, err := c.srv.store.append(key, evs, c.srv.now(), msgEventIDHashInvalid)
	if err != nil {
		return err
	}
	c.write(func(w *resp3.Writer) { writeMultiAppend(w, res) })
	return nil
}

func writeMultiAppend(w *resp3.Writer, res *appendResult) {
	w.WriteMapHeader(5)
	w.WriteSimpleString("partition_key")
	w.WriteSimpleString(res.key.String())
	w.WriteSimpleString("partition_id")
	w.WriteInt(int64(res.pid))
	w.WriteSimpleString("first_partition_sequence")
	w.WriteInt(int64(res.events[0].seq))
	w.WriteSimpleString("last_partition_sequence")
	w.WriteInt(int64(res.events[len(res.events)-1].seq))
	w.WriteSimpleString("events")
	w.WriteArrayHeader(len(res.events))
	for _, e := range res.events {
		w.WriteMapHeader(4)
		w.WriteSimpleString("event_id")
		w.WriteSimpleString(e.id.String())
		w.WriteSimpleString("stream_id")
		w.WriteSimpleString(e.streamID)
		w.WriteSimpleString("stream_version")
		w.WriteInt(int64(e.version))
		w.WriteSimpleString("timestamp")
		w.WriteInt(e.timestampMillis())
	}
}
