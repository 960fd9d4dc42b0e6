package embedded

import (
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// defaultCount is the COUNT of ESCAN and EPSCAN when none is given.
const defaultCount = 100

// EGET <event_id>
func cmdEget(c *conn, a *args) error {
	id, err := a.uuidArg("event id")
	if err != nil {
		return err
	}
	if err := a.end(); err != nil {
		return err
	}
	e, err := c.srv.store.eventByID(id)
	if err != nil {
		return err
	}
	c.srv.countRead(e != nil)
	c.write(func(w *resp3.Writer) {
		if e == nil {
			w.WriteNull()
			return
		}
		writeEvent(w, e)
	})
	return nil
}

func (s *Server) countRead(found bool) {
	if found {
		s.cacheHits.Add(1)
	} else {
		s.cacheMisses.Add(1)
	}
}

// ESCAN <stream_id> <start> <end> [PARTITION_KEY key] [COUNT n]
//
// Both ends are inclusive. has_more is true when COUNT events were returned
// and another event exists within the range, or when the stream has an event
// past end.
func cmdEscan(c *conn, a *args) error {
	sid, err := a.streamID()
	if err != nil {
		return err
	}
	from, err := a.rangeValue()
	if err != nil {
		return err
	}
	to, err := a.rangeValue()
	if err != nil {
		return err
	}
	// Options are taken while a keyword is followed by a value that
	// parses, as SierraDB's parser does.
	key := sierradb.StreamPartitionKey(sid)
	count := uint64(defaultCount)
	var keySeen, countSeen bool
options:
	for ; a.i+1 < len(a.v); a.i += 2 {
		kw, _ := keywordOf(a.v[a.i])
		switch kw {
		case "PARTITION_KEY":
			k, ok := uuidValue(a.v[a.i+1])
			if !ok {
				break options
			}
			if keySeen {
				return alreadySpecified("partition key")
			}
			key, keySeen = k, true
		case "COUNT":
			n, ok := numberValue(a.v[a.i+1])
			if !ok {
				break options
			}
			if countSeen {
				return alreadySpecified("count")
			}
			count, countSeen = n, true
		default:
			break options
		}
	}
	if err := a.trailing("PARTITION_KEY", "COUNT"); err != nil {
		return err
	}
	start, end, err := checkRange(from, to, "version")
	if err != nil {
		return err
	}
	evs, latest, err := c.srv.store.streamRange(key, sid, start, end, count)
	if err != nil {
		return err
	}
	hasMore := false
	if latest >= 0 {
		hi := uint64(latest)
		if end != nil && *end < hi {
			hi = *end
			hasMore = true // an event past end exists
		}
		next := start + uint64(len(evs))
		if uint64(len(evs)) == count && next >= start && next <= hi {
			hasMore = true
		}
	}
	c.srv.countRead(len(evs) > 0)
	c.write(func(w *resp3.Writer) { writeScan(w, hasMore, evs) })
	return nil
}

// ESVER <stream_id> [PARTITION_KEY key]
func cmdEsver(c *conn, a *args) error {
	sid, err := a.streamID()
	if err != nil {
		return err
	}
	key := sierradb.StreamPartitionKey(sid)
	if a.keyword("PARTITION_KEY") {
		if key, err = a.uuidArg("partition key"); err != nil {
			return err
		}
	}
	if err := a.end(); err != nil {
		return err
	}
	v := c.srv.store.streamLatest(key, sid)
	c.write(func(w *resp3.Writer) { writeLatest(w, v) })
	return nil
}

func writeLatest(w *resp3.Writer, v int64) {
	if v < 0 {
		w.WriteNull()
		return
	}
	w.WriteInt(v)
}

// EPSCAN <partition> <start> <end> [COUNT n]
//
// Both ends are inclusive (the documented meaning). has_more is true iff an
// event exists after the last one returned, whatever end is; with nothing
// returned, iff start is at or below the latest sequence.
func cmdEpscan(c *conn, a *args) error {
	pid, err := a.partitionSelector(c.srv.cfg.PartitionCount)
	if err != nil {
		return err
	}
	from, err := a.rangeValue()
	if err != nil {
		return err
	}
	to, err := a.rangeValue()
	if err != nil {
		return err
	}
	count := uint64(defaultCount)
	countSeen := false
	for a.keyword("COUNT") {
		n, err := a.u64()
		if err != nil {
			return err
		}
		if countSeen {
			return alreadySpecified("count")
		}
		count, countSeen = n, true
	}
	if err := a.trailing("COUNT", "number"); err != nil {
		return err
	}
	start, end, err := checkRange(from, to, "sequence")
	if err != nil {
		return err
	}
	if pid >= c.srv.cfg.PartitionCount {
		return cmdError(msgPartitionUnavailable)
	}
	evs, latest, err := c.srv.store.partitionRange(pid, start, end, count)
	if err != nil {
		return err
	}
	hasMore := false
	if latest >= 0 {
		if len(evs) > 0 {
			hasMore = evs[len(evs)-1].seq < uint64(latest)
		} else {
			hasMore = start <= uint64(latest)
		}
	}
	c.srv.countRead(len(evs) > 0)
	c.write(func(w *resp3.Writer) { writeScan(w, hasMore, evs) })
	return nil
}

// EPSEQ <partition>
func cmdEpseq(c *conn, a *args) error {
	pid, err := a.partitionSelector(c.srv.cfg.PartitionCount)
	if err != nil {
		return err
	}
	if err := a.end(); err != nil {
		return err
	}
	if pid >= c.srv.cfg.PartitionCount {
		return cmdError(msgPartitionUnavailable)
	}
	v := c.srv.store.partitionLatest(pid)
	c.write(func(w *resp3.Writer) { writeLatest(w, v) })
	return nil
}
