package embedded

import (
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// fromSpec is a parsed FROM clause. A nil *fromSpec means live only.
type fromSpec struct {
	latest  bool
	all     *uint64           // FROM <n>
	streams map[string]uint64 // ESUB FROM MAP
	parts   map[uint16]uint64 // EPSUB FROM MAP
	def     *uint64           // EPSUB FROM MAP ... DEFAULT <n>
}

// position returns where a source starts: live (latest+1) unless the FROM
// clause says otherwise. mapped is the FROM MAP entry for the source.
func (f *fromSpec) position(latest int64, mapped *uint64) uint64 {
	switch {
	case f == nil || f.latest:
	case f.all != nil:
		return *f.all
	case mapped != nil:
		return *mapped
	case f.def != nil:
		return *f.def
	}
	return uint64(latest + 1)
}

// parseSubOptions reads [FROM LATEST | FROM <n> | FROM MAP ...] then
// [WINDOW n], in that order, each at most once, as SierraDB's parser does.
// parseMap reads the entries after FROM MAP.
func parseSubOptions(a *args, parseMap func(*fromSpec) error) (*fromSpec, uint64, error) {
	var from *fromSpec
	window := uint64(defaultWindow)
	if a.keyword("FROM") {
		from = &fromSpec{}
		v, err := a.next("LATEST, number or MAP")
		if err != nil {
			return nil, 0, err
		}
		kw, _ := keywordOf(v)
		n, isNumber := numberValue(v)
		switch {
		case kw == "LATEST":
			from.latest = true
		case isNumber:
			from.all = &n
		case kw == "MAP":
			if err := parseMap(from); err != nil {
				return nil, 0, err
			}
		default:
			return nil, 0, unexpected(v, "LATEST, number or MAP")
		}
	}
	if a.keyword("WINDOW") {
		n, err := a.u64()
		if err != nil {
			return nil, 0, err
		}
		if n < 1 {
			return nil, 0, errorf(msgMinNumber, n, 1)
		}
		window = n
	}
	return from, window, a.end()
}

// ESUB <stream_id> [PARTITION_KEY key] [<stream_id> [PARTITION_KEY key]]...
// [FROM LATEST | FROM <version> | FROM MAP <stream>=<version>...] [WINDOW n]
//
// The stream list ends at FROM or WINDOW (any case), so streams with those
// names cannot be subscribed to.
func cmdEsub(c *conn, a *args) error {
	type sel struct {
		key uuid.UUID
		sid string
	}
	var streams []sel
	for len(streams) == 0 || a.more() && !a.peekKeyword("FROM") && !a.peekKeyword("WINDOW") && isText(a.v[a.i]) {
		sid, err := a.streamID()
		if err != nil {
			return err
		}
		key := sierradb.StreamPartitionKey(sid)
		if a.keyword("PARTITION_KEY") {
			if key, err = a.uuidArg("partition key"); err != nil {
				return err
			}
			if a.peekKeyword("PARTITION_KEY") {
				return alreadySpecified("partition key")
			}
		}
		if !slices.Contains(streams, sel{key, sid}) {
			streams = append(streams, sel{key, sid})
		}
	}
	from, window, err := parseSubOptions(a, func(f *fromSpec) error {
		f.streams = make(map[string]uint64)
		for len(f.streams) == 0 || a.more() && !a.peekKeyword("WINDOW") && isText(a.v[a.i]) {
			s, err := a.str("stream id version value")
			if err != nil {
				return err
			}
			i := strings.LastIndexByte(s, '=')
			if i < 0 {
				return cmdError(msgMissingEquals)
			}
			if err := checkStreamID(s[:i]); err != nil {
				return err
			}
			v, ok := parseDigits(s[i+1:])
			if !ok {
				return cmdError(msgBadStreamVersion)
			}
			f.streams[s[:i]] = v
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := c.checkSubscriptionLimit(); err != nil {
		return err
	}
	st := c.srv.store
	sources := make([]*subSource, 0, len(streams))
	for _, s := range streams {
		var mapped *uint64
		if from != nil {
			if v, ok := from.streams[s.sid]; ok {
				mapped = &v
			}
		}
		sources = append(sources, &subSource{
			stream: true, key: s.key, streamID: s.sid,
			next: from.position(st.streamLatest(s.key, s.sid), mapped),
		})
	}
	c.subscribe(sources, window)
	return nil
}

// EPSUB <* | id | id,id,...> [FROM LATEST | FROM <seq> | FROM MAP <p>=<seq>...
// [DEFAULT <seq>]] [WINDOW n]
//
// Partition ids at or beyond the partition count are accepted and never
// deliver anything (SierraDB only logs such errors; tested: TestEpsubForms).
func cmdEpsub(c *conn, a *args) error {
	const what = "*, partition id or comma-separated partition ids"
	s := c.srv
	v, err := a.next(what)
	if err != nil {
		return err
	}
	var ids []uint16
	text, isTextArg := textValue(v)
	n, isNumber := numberValue(v)
	switch {
	case isTextArg && text == "*":
		for p := range s.cfg.PartitionCount {
			ids = append(ids, p)
		}
	case isNumber && n <= 0xFFFF:
		ids = append(ids, uint16(n))
	case isTextArg:
		for part := range strings.SplitSeq(text, ",") {
			n, ok := parseDigits(strings.TrimSpace(part))
			if !ok || n > 0xFFFF {
				return unexpected(v, what)
			}
			ids = append(ids, uint16(n))
		}
	default:
		return unexpected(v, what)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)

	from, window, err := parseSubOptions(a, func(f *fromSpec) error {
		// Entries are taken while they parse; the first one must.
		f.parts = make(map[uint16]uint64)
		for a.more() {
			p, seq, ok := partitionSequence(a.v[a.i])
			if !ok {
				break
			}
			f.parts[p] = seq
			a.i++
		}
		if len(f.parts) == 0 {
			if !a.more() {
				return endOfInput("partition id sequence value")
			}
			return unexpected(a.v[a.i], "partition id sequence value")
		}
		if a.keyword("DEFAULT") {
			n, err := a.u64()
			if err != nil {
				return err
			}
			f.def = &n
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := c.checkSubscriptionLimit(); err != nil {
		return err
	}
	sources := make([]*subSource, 0, len(ids))
	for _, pid := range ids {
		if pid >= s.cfg.PartitionCount {
			s.logger.Warn("EPSUB: partition not served; it will deliver nothing", "partition", pid)
			continue
		}
		var mapped *uint64
		if from != nil {
			if v, ok := from.parts[pid]; ok {
				mapped = &v
			}
		}
		sources = append(sources, &subSource{pid: pid, next: from.position(s.store.partitionLatest(pid), mapped)})
	}
	c.subscribe(sources, window)
	return nil
}

// checkSubscriptionLimit fails when the connection has as many
// subscriptions as Config.MaxSubscriptionsPerConn allows.
func (c *conn) checkSubscriptionLimit() error {
	c.subsMu.Lock()
	n := len(c.subs)
	c.subsMu.Unlock()
	if max := c.srv.cfg.MaxSubscriptionsPerConn; n >= max {
		return errorf(msgTooManySubs, max)
	}
	return nil
}

// partitionSequence reads a FROM MAP entry of EPSUB: <partition>=<sequence>.
func partitionSequence(v resp3.Value) (uint16, uint64, bool) {
	s, ok := textValue(v)
	if !ok {
		return 0, 0, false
	}
	ps, ss, ok := strings.Cut(s, "=")
	p, pok := parseDigits(ps)
	seq, sok := parseDigits(ss)
	if !ok || !pok || p > 0xFFFF || !sok {
		return 0, 0, false
	}
	return uint16(p), seq, true
}

// EACK <subscription_id> <cursor>
func cmdEack(c *conn, a *args) error {
	id, err := a.uuidArg("subscription id")
	if err != nil {
		return err
	}
	cursor, err := a.u64()
	if err != nil {
		return err
	}
	if err := a.end(); err != nil {
		return err
	}
	c.subsMu.Lock()
	sub := c.subs[id]
	c.subsMu.Unlock()
	if sub == nil {
		return cmdError(msgSubscriptionNotFound)
	}
	select {
	case <-sub.done:
		return cmdError(msgAckFailed)
	default:
	}
	sub.ack(cursor)
	c.write(func(w *resp3.Writer) { w.WriteSimpleString("OK") })
	return nil
}
