package embedded

import (
	"strings"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// What SierraDB's parser expects where the options of an event end and the
// request does not.
const (
	eappendOptions  = "EVENT_ID, PARTITION_KEY, EXPECTED_VERSION, TIMESTAMP, PAYLOAD, METADATA"
	emappendOptions = "stream id, event name, EVENT_ID, EXPECTED_VERSION, TIMESTAMP, PAYLOAD, METADATA"
)

// parseEventOptions reads the options after an event's name the way
// SierraDB's parser does. An option is taken only when its keyword is
// followed by a value that parses; otherwise the options end at the keyword
// (EAPPEND then fails on it, EMAPPEND starts its next event there). A
// repeated option fails unless the earlier value equals the default
// (EXPECTED_VERSION any, an empty PAYLOAD or METADATA): SierraDB detects
// repeats that way, and the later value wins. withKey allows PARTITION_KEY
// (EAPPEND only); the key is returned if given.
func parseEventOptions(a *args, ev *newEvent, withKey bool) (*uuid.UUID, error) {
	var key *uuid.UUID
	for ; a.i+1 < len(a.v); a.i += 2 {
		kw, ok := keywordOf(a.v[a.i])
		if !ok {
			return key, nil
		}
		val := a.v[a.i+1]
		switch kw {
		case "EVENT_ID":
			id, ok := uuidValue(val)
			if !ok {
				return key, nil
			}
			if ev.hasID {
				return nil, alreadySpecified("event id")
			}
			ev.id, ev.hasID = id, true
		case "PARTITION_KEY":
			k, ok := uuidValue(val)
			if !withKey || !ok {
				return key, nil
			}
			if key != nil {
				return nil, alreadySpecified("partition key")
			}
			key = &k
		case "EXPECTED_VERSION":
			e, ok := expectedVersionValue(val)
			if !ok {
				return key, nil
			}
			if !ev.expected.IsAny() {
				return nil, alreadySpecified("expected version")
			}
			ev.expected = e
		case "TIMESTAMP":
			ms, ok := numberValue(val)
			if !ok {
				return key, nil
			}
			if ev.hasTS {
				return nil, alreadySpecified("timestamp")
			}
			ev.tsMillis, ev.hasTS = ms, true
		case "PAYLOAD", "METADATA":
			b, ok := dataValue(val)
			if !ok {
				return key, nil
			}
			dst := &ev.payload
			if kw == "METADATA" {
				dst = &ev.metadata
			}
			if len(*dst) > 0 {
				return nil, alreadySpecified(strings.ToLower(kw))
			}
			*dst = b
		default:
			return key, nil
		}
	}
	return key, nil
}

// checkTimestamp converts TIMESTAMP's milliseconds to nanoseconds as
// SierraDB does, rejecting a product that overflows 64 bits.
func checkTimestamp(ev *newEvent) error {
	if !ev.hasTS {
		return nil
	}
	if ev.tsMillis > ^uint64(0)/1_000_000 {
		return cmdError(msgTimestampFormat)
	}
	ev.tsNanos = ev.tsMillis * 1_000_000
	return nil
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
	if err := a.trailing(eappendOptions); err != nil {
		return err
	}
	if err := c.srv.checkStrict(ev.expected); err != nil {
		return err
	}
	if err := checkTimestamp(&ev); err != nil {
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
	for {
		// An event starts at a text argument; anything else ends the
		// events (and then the request must end).
		if len(evs) > 0 && a.more() {
			if _, ok := textValue(a.v[a.i]); !ok {
				if err := a.trailing(emappendOptions); err != nil {
					return err
				}
			}
		}
		if len(evs) > 0 && !a.more() {
			break
		}
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
	for i := range evs {
		if err := checkTimestamp(&evs[i]); err != nil {
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
