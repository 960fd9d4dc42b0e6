package pubsub

// Delivering one subscription: a read-ahead goroutine filters and converts
// events, and the delivery loop hands them out one at a time, redelivering
// after a Nack.

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/internal/backoff"
	"github.com/esmill/esmill/sierradb"
)

// readAhead is how many converted messages wait for the consumer: the next
// message is decoded while the consumer handles the current one.
const readAhead = 32

// item is an event converted by the read-ahead goroutine. skips holds the
// positions of other streams' events that came before it (consumer groups
// only); an item with no msg carries only skips.
type item struct {
	ev    sierradb.Event
	msg   *message.Message
	skips map[uint16]uint64
}

// loop delivers the subscription's events until it ends. A second
// goroutine (read) reads ahead: it filters and converts events, so that
// decoding overlaps with the consumer's work.
func (r *run) loop(ctx context.Context) {
	defer r.s.wg.Done()
	defer close(r.out)
	log := r.s.cfg.Logger.With("topic", r.topic, "consumer_group", r.s.cfg.ConsumerGroup)
	items := make(chan item, readAhead)
	stop := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		r.read(ctx, items, stop)
	}()
	defer func() {
		close(stop)
		r.sub.Close()
		<-readDone
		if r.cp != nil {
			r.cp.flush(ctx)
		}
	}()
	for {
		select {
		case it, ok := <-items:
			if !ok {
				if err := r.sub.Err(); err != nil {
					log.Error("sierradb/pubsub: subscription ended", "error", err)
				}
				return
			}
			// Everything before it was acked: the positions of the
			// other streams' events in between may be saved.
			r.cp.skip(ctx, &it)
			if it.msg != nil && !r.deliver(ctx, &it.ev, it.msg, log) {
				return
			}
		case <-r.s.closing:
			return
		case <-ctx.Done():
			return
		}
	}
}

// read filters and converts events into items until the subscription
// ends or stop is closed.
func (r *run) read(ctx context.Context, items chan<- item, stop <-chan struct{}) {
	defer close(items)
	events := r.sub.Events()
	var skips map[uint16]uint64
	skipped := 0
	lastFlush := time.Now()
	send := func(it item) bool {
		select {
		case items <- it:
			return true
		case <-stop:
		case <-r.s.closing:
		case <-ctx.Done():
		}
		return false
	}
	flushSkips := func() bool {
		ok := send(item{skips: skips})
		skips, skipped, lastFlush = nil, 0, time.Now()
		return ok
	}
	for {
		var ev sierradb.Event
		var ok bool
		select {
		case ev, ok = <-events:
		default:
			// Idle: pass on the skipped positions, at most once per
			// skipFlushInterval.
			var timer *time.Timer
			var flush <-chan time.Time
			if skipped > 0 {
				timer = time.NewTimer(skipFlushInterval - time.Since(lastFlush))
				flush = timer.C
			}
			flushNow := false
			select {
			case ev, ok = <-events:
			case <-flush:
				flushNow = true
			case <-stop:
				return
			}
			if timer != nil {
				timer.Stop()
			}
			if flushNow {
				if !flushSkips() {
					return
				}
				continue
			}
		}
		if !ok {
			return
		}
		// The server's identity (see Client.ServerID) is no message.
		if (r.filter && !r.target.match(&ev)) || ev.StreamID == sierradb.ServerIDStream {
			r.sub.Ack(ev)
			if r.cp == nil {
				continue
			}
			if skips == nil {
				skips = make(map[uint16]uint64)
			}
			skips[ev.PartitionID] = ev.PartitionSequence
			if skipped++; skipped >= skipFlushEvery && !flushSkips() {
				return
			}
			continue
		}
		if !send(item{ev: ev, msg: r.s.message(&ev), skips: skips}) {
			return
		}
		skips, skipped = nil, 0
	}
}

// deliver hands one event to the consumer until it is acked, and reports
// whether the subscription goes on.
func (r *run) deliver(ctx context.Context, ev *sierradb.Event, msg *message.Message, log *slog.Logger) bool {
	nacks := 0
	redelivery := backoff.Policy{Initial: r.s.cfg.NackDelay, Max: r.s.cfg.MaxNackDelay}.Start()
	for {
		mctx, cancel := context.WithCancel(ctx)
		msg.SetContext(mctx)
		select {
		case r.out <- msg:
		case <-r.s.closing:
			cancel()
			return false
		case <-ctx.Done():
			cancel()
			return false
		}
		select {
		case <-msg.Acked():
			cancel()
			r.acked(ctx, ev)
			return true
		case <-msg.Nacked():
			cancel()
		case <-r.s.closing:
			cancel()
			r.ackedLate(ctx, msg, ev)
			return false
		case <-ctx.Done():
			cancel()
			r.ackedLate(ctx, msg, ev)
			return false
		}

		nacks++
		if limit := r.s.cfg.MaxRedeliveries; limit > 0 && nacks > limit {
			if r.exhausted(ctx, ev, nacks-1, log) {
				r.acked(ctx, ev)
				return true
			}
		}
		if !r.wait(ctx, redelivery) {
			return false
		}
		// Built again from the event: the consumer may have changed the
		// message it nacked.
		msg = r.s.message(ev)
		msg.Metadata[esmill.MetaRedeliveries] = strconv.Itoa(nacks)
	}
}

// wait sleeps for the next redelivery delay and reports whether the
// subscription goes on (neither ctx done nor the subscriber closed).
func (r *run) wait(ctx context.Context, b *backoff.Backoff) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(r.s.closeCtx, cancel)
	defer stop()
	return b.Wait(ctx) == nil
}

// ackedLate records an Ack that raced with the end of the subscription, so
// that a message acked before Close is not delivered again.
func (r *run) ackedLate(ctx context.Context, msg *message.Message, ev *sierradb.Event) {
	select {
	case <-msg.Acked():
		r.acked(ctx, ev)
	default:
	}
}

func (r *run) acked(ctx context.Context, ev *sierradb.Event) {
	r.sub.Ack(*ev)
	r.cp.ack(ctx, ev)
}

// exhausted hands a message that reached MaxRedeliveries to the hook and
// reports whether to acknowledge it.
func (r *run) exhausted(ctx context.Context, ev *sierradb.Event, redeliveries int, log *slog.Logger) bool {
	msg := r.s.message(ev)
	if redeliveries > 0 {
		msg.Metadata[esmill.MetaRedeliveries] = strconv.Itoa(redeliveries)
	}
	fields := []any{"message_uuid", msg.UUID, "event_id", msg.Metadata[esmill.MetaEventID],
		"stream_id", ev.StreamID, "stream_version", ev.StreamVersion, "redeliveries", redeliveries}
	hook := r.s.cfg.OnRedeliveriesExhausted
	if hook == nil {
		log.Error("sierradb/pubsub: message nacked after its last redelivery; dropping it", fields...)
		return true
	}
	if err := hook(ctx, r.topic, msg); err != nil {
		log.Error("sierradb/pubsub: OnRedeliveriesExhausted failed; delivering the message again", append(fields, "error", err)...)
		return false
	}
	return true
}
