package embedded

import (
	"github.com/google/uuid"

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

// streamKeyOption reads an optional PARTITION_KEY; seen tracks repeats.
func streamKeyOption(a *args, key *uuid.UUID, seen *bool) error {
	if *seen {
		return alreadySpecified("partition key")
	}
	*seen = true
	k, err := a.uuidArg("partition key")
	if err != nil {
		return err
	}
	*key = k
	return nil
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
	start, end, err := a.rangeArgs("version")
	if err != nil {
		return err
	}
	key := sierradb.StreamPartitionKey(sid)
	count := uint64(defaultCount)
	var keySeen, countSeen bool
	for a.more() {
		switch {
		case a.keyword("PARTITION_KEY"):
			if err := streamKeyOption(a, &key, &keySeen); err != nil {
				return err
			}
		case a.keyword("COUNT"):
			if countSeen {
				return alreadySpecified("count")
			}
			countSeen = true
			if count, err = a.u64("count"); err != nil {
				return err
			}
		default:
			return a.end()
		}
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
	var keySeen bool
	for a.more() {
		if !a.keyword("PARTITION_KEY") {
			return a.end()
		}
		if err := streamKeyOption(a, &key, &keySeen); err != nil {
			return err
		}
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

// partitionArg reads a partition selector and checks that the partition
// exists.
func (s *Server) partitionArg(a *args) (uint16, error) {
	pid, err := a.partitionSelector(s.cfg.PartitionCount)
	if err != nil {
		return 0, err
	}
	if pid >= s.cfg.PartitionCount {
		return 0, cmdError(msgPartitionUnavailable)
	}
	return pid, nil
}

// EPSCAN <partition> <start> <end> [COUNT n]
//
// Both ends are inclusive (the documented meaning). has_more is true iff an
// event exists after the last one returned, whatever end is; with nothing
// returned, iff start is at or below the latest sequence.
func cmdEpscan(c *conn, a *args) error {
	pid, err := c.srv.partitionArg(a)
	if err != nil {
		return err
	}
	start, end, err := a.rangeArgs("sequence")
	if err != nil {
		return err
	}
	count := uint64(defaultCount)
	if a.keyword("COUNT") {
		if count, err = a.u64("count"); err != nil {
			return err
		}
		if a.peekKeyword("COUNT") {
			return alreadySpecified("count")
		}
	}
	if err := a.end(); err != nil {
		return err
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
	pid, err := c.srv.partitionArg(a)
	if err != nil {
		return err
	}
	if err := a.end(); err != nil {
		return err
	}
	v := c.srv.store.partitionLatest(pid)
	c.write(func(w *resp3.Writer) { writeLatest(w, v) })
	return nil
}
