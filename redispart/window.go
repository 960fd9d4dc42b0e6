package redispart

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// entry is one stream entry between being read and its ack being
// recorded.
type entry struct {
	id        string
	msg       *message.Message // nil: not a message, skipped
	key       string           // OrderKey's
	state     entryState
	notBefore time.Time          // a nacked entry's next delivery
	cancel    context.CancelFunc // ends the message's context
}

type entryState uint8

const (
	waiting entryState = iota
	inFlight
	acked
)

// verdict is a handler's answer for an entry in flight.
type verdict struct {
	e     *entry
	acked bool
}

// window is a subscription's entries from its position on, in stream
// order, with the keys in use: the first entry of a key not yet acked
// holds it, and only the holder of a key is delivered.
type window struct {
	entries  []*entry
	holders  map[string]*entry
	inFlight int
	waiting  int // entries in state waiting
}

// entryOf makes the entry of a stream entry. An entry that is not a
// message is logged and skipped: nothing can handle it, and it must not
// block the topic for good.
func (sub *subscription) entryOf(log *slog.Logger, m redis.XMessage) *entry {
	cfg := &sub.s.cfg
	msg, err := cfg.Unmarshaller.Unmarshal(m.Values)
	if err != nil {
		log.Error("redispart: entry is not a message; skipped", "entry", m.ID, "error", err)
		return &entry{id: m.ID, state: acked}
	}
	e := &entry{id: m.ID, msg: msg}
	if cfg.MaxInFlight > 1 {
		e.key = cfg.OrderKey(msg)
	}
	return e
}

// add appends a read entry.
func (w *window) add(e *entry) {
	w.entries = append(w.entries, e)
	if e.state == waiting {
		w.waiting++
	}
}

// handOver delivers every waiting entry that holds its key, or can take
// it, while the window has room. It returns when the earliest nacked
// entry may go again (zero: none waits for its time), and false when the
// subscription must end.
func (sub *subscription) handOver(ctx context.Context, w *window, verdicts chan<- verdict, watchers *sync.WaitGroup) (time.Time, bool) {
	var next time.Time
	if w.waiting == 0 {
		return next, true
	}
	now := time.Now()
	for _, e := range w.entries {
		if w.inFlight >= sub.s.cfg.MaxInFlight {
			break
		}
		if e.state != waiting {
			continue
		}
		if h, ok := w.holders[e.key]; ok && h != e {
			continue
		}
		w.holders[e.key] = e
		if e.notBefore.After(now) {
			if next.IsZero() || e.notBefore.Before(next) {
				next = e.notBefore
			}
			continue
		}
		mctx, cancel := context.WithCancel(ctx)
		e.msg.SetContext(mctx)
		e.cancel = cancel
		select {
		case sub.out <- e.msg:
		case <-ctx.Done():
			return next, false
		}
		e.state = inFlight
		w.waiting--
		w.inFlight++
		watchers.Add(1)
		go func(e *entry, msg *message.Message) {
			defer watchers.Done()
			select {
			case <-msg.Acked():
				verdicts <- verdict{e: e, acked: true}
			case <-msg.Nacked():
				verdicts <- verdict{e: e}
			case <-mctx.Done():
			}
		}(e, e.msg)
	}
	return next, true
}

// settle applies a handler's verdict: an acked entry frees its key; a
// nacked one keeps it and waits to go again, a copy of its message.
func (w *window) settle(v verdict, resend time.Duration) {
	e := v.e
	if e.state != inFlight {
		return
	}
	e.cancel()
	e.cancel = nil
	w.inFlight--
	if v.acked {
		e.state = acked
		delete(w.holders, e.key)
		e.msg = nil
		return
	}
	e.state = waiting
	w.waiting++
	e.msg = e.msg.Copy()
	if resend > 0 {
		e.notBefore = time.Now().Add(resend)
	}
}

// ackedRun returns the id of the last entry of the run of acked entries
// at the start of the window, and the run's length.
func (w *window) ackedRun() (string, int) {
	n := 0
	for n < len(w.entries) && w.entries[n].state == acked {
		n++
	}
	if n == 0 {
		return "", 0
	}
	return w.entries[n-1].id, n
}

// drop forgets the first n entries, whose acks are recorded.
func (w *window) drop(n int) {
	rest := copy(w.entries, w.entries[n:])
	clear(w.entries[rest:])
	w.entries = w.entries[:rest]
}
