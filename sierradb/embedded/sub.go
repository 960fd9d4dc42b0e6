package embedded

import (
	"math"
	"sync"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// defaultWindow is the WINDOW of ESUB and EPSUB when none is given.
const defaultWindow = 1000

const (
	deliverBatch = 256 // most events written per wake-up round
	sourceBatch  = 50  // most events taken from one partition or stream per round
)

// subSource is one position a subscription reads from: the next sequence of
// a partition, or the next version of a stream.
type subSource struct {
	stream   bool
	pid      uint16    // partition sources
	key      uuid.UUID // stream sources
	streamID string
	next     uint64
}

func (src *subSource) fetch(st *store, max int, out []*event) ([]*event, error) {
	if src.stream {
		return st.fetchStream(src.key, src.streamID, src.next, max, out)
	}
	return st.fetchPartition(src.pid, src.next, max, out)
}

// subscription delivers events to one connection. Its goroutine pulls from
// the store: it sends whatever exists past each source's position, as far as
// the window allows, and otherwise waits for the store's changed signal, an
// EACK, or the end of the connection. Catch-up and live delivery are the same
// loop, so the switch between them has no gap and no duplicate, and the store
// never waits for a subscriber (tested: TestSubscriptionNoGapNoDuplicate,
// TestSlowSubscriberDoesNotBlockStore).
type subscription struct {
	id      uuid.UUID
	seq     uint64 // the server's number for it, in order of creation
	conn    *conn
	window  uint64
	sources []*subSource

	mu      sync.Mutex
	acked   bool
	lastAck uint64
	ackSig  chan struct{} // buffered(1): an EACK arrived

	// Owned by the goroutine.
	cursor uint64
	rr     int

	done chan struct{} // closed when the goroutine has ended
}

// ack records an EACK. The last value wins, even a lower one.
func (sub *subscription) ack(cursor uint64) {
	sub.mu.Lock()
	sub.acked, sub.lastAck = true, cursor
	sub.mu.Unlock()
	select {
	case sub.ackSig <- struct{}{}:
	default:
	}
}

// allowance returns how many events may be sent now: cursor c may be sent
// if no EACK came yet and c < window, or if c - lastAck <= window
// (saturating subtraction).
func (sub *subscription) allowance() uint64 {
	sub.mu.Lock()
	acked, last := sub.acked, sub.lastAck
	sub.mu.Unlock()
	c := sub.cursor
	if !acked {
		if c >= sub.window {
			return 0
		}
		return sub.window - c
	}
	limit := last + sub.window // highest cursor that may be sent
	if limit < last {
		limit = math.MaxUint64
	}
	if c > limit {
		return 0
	}
	if n := limit - c + 1; n != 0 {
		return n
	}
	return math.MaxUint64
}

func (sub *subscription) run() {
	srv := sub.conn.srv
	defer srv.wg.Done()
	defer srv.subscriptions.Add(-1)
	defer close(sub.done)
	var buf []*event
	for {
		select {
		case <-sub.conn.done:
			return
		case <-srv.closing:
			return
		default:
		}
		changed := srv.store.changed()
		n, ok := sub.deliver(&buf)
		if !ok {
			return
		}
		if n > 0 {
			continue
		}
		select {
		case <-changed:
		case <-sub.ackSig:
		case <-sub.conn.done:
			return
		case <-srv.closing:
			return
		}
	}
}

// deliver sends one round of events, taking up to sourceBatch from each
// source in turn, starting after the source the previous round ended on. It
// returns how many it sent and false if the connection broke.
func (sub *subscription) deliver(buf *[]*event) (int, bool) {
	allow := sub.allowance()
	if allow == 0 || len(sub.sources) == 0 {
		return 0, true
	}
	limit := int(min(allow, deliverBatch))
	out := (*buf)[:0]
	st := sub.conn.srv.store
	n := len(sub.sources)
	visited := 0
	for visited < n && len(out) < limit {
		src := sub.sources[(sub.rr+visited)%n]
		visited++
		if !src.stream && sub.conn.srv.liveHeld(src.pid, sub.seq) {
			continue
		}
		before := len(out)
		var err error
		out, err = src.fetch(st, min(sourceBatch, limit-len(out)), out)
		if err != nil {
			// The store cannot serve this subscription any more: end the
			// connection, the client resubscribes.
			sub.conn.srv.logger.Error("subscription stopped: reading the store failed", "subscription", sub.id, "err", err)
			sub.conn.close()
			return 0, false
		}
		src.next += uint64(len(out) - before)
	}
	sub.rr = (sub.rr + visited) % n
	*buf = out
	if len(out) == 0 {
		return 0, true
	}
	id := sub.id.String()
	first := sub.cursor
	ok := sub.conn.write(func(w *resp3.Writer) {
		for i, e := range out {
			w.WritePushHeader(4)
			w.WriteSimpleString("message")
			w.WriteSimpleString(id)
			w.WriteInt(int64(first + uint64(i)))
			writeEvent(w, e)
		}
	})
	sub.cursor += uint64(len(out))
	clear(out) // drop the references to the events
	return len(out), ok
}

// subscribe registers a subscription on c, writes the reply (the
// subscription id) and the subscribe push as one write, and starts the
// subscription's goroutine.
func (c *conn) subscribe(sources []*subSource, window uint64) {
	sub := &subscription{
		id:      uuid.New(),
		seq:     c.srv.subSeq.Add(1),
		conn:    c,
		window:  window,
		sources: sources,
		ackSig:  make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	c.subsMu.Lock()
	c.subs[sub.id] = sub
	active := len(c.subs)
	c.subsMu.Unlock()
	srv := c.srv
	srv.wg.Add(1)
	srv.subscriptions.Add(1)
	id := sub.id.String()
	c.write(func(w *resp3.Writer) {
		w.WriteSimpleString(id)
		w.WritePushHeader(3)
		w.WriteSimpleString("subscribe")
		w.WriteSimpleString(id)
		w.WriteInt(int64(active))
	})
	go sub.run()
}
