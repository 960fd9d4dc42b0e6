package pubsub

// Sending a Publish call: calls to one stream queue behind a leader, which
// sends them (joined where it may) with consecutive expected versions.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/esmill/esmill/internal/backoff"
	"github.com/esmill/esmill/sierradb"
)

// append queues req behind the stream's other calls and sends it, alone or
// joined with calls queued with it.
func (p *Publisher) append(t target, req *pubRequest) error {
	p.mu.Lock()
	st := p.stream(t)
	st.queue = append(st.queue, req)
	if st.busy {
		p.mu.Unlock()
		select {
		case <-req.wake:
		case <-req.ctx.Done():
		}
		p.mu.Lock()
		switch {
		case req.done:
			p.mu.Unlock()
			return req.err
		case !req.leader:
			// Cancelled while queued: never sent (tested:
			// TestPublishCancelWhileQueued).
			st.queue = slices.DeleteFunc(st.queue, func(r *pubRequest) bool { return r == req })
			p.mu.Unlock()
			return req.ctx.Err()
		}
	} else {
		st.busy = true
	}

	// Leader: send the head of the queue (which is req, unless it was
	// cancelled), then hand over to the next queued call.
	batch := p.take(st)
	if len(batch) > 0 {
		known, version := st.known, st.version
		p.mu.Unlock()
		known, version, err := p.send(t, batch, known, version)
		p.mu.Lock()
		st.known, st.version = known, version
		for _, r := range batch {
			r.done, r.err = true, err
			if r != req {
				r.wake <- struct{}{}
			}
		}
	}
	if len(st.queue) > 0 {
		next := st.queue[0]
		next.leader = true
		next.wake <- struct{}{}
	} else {
		st.busy = false
	}
	p.mu.Unlock()
	return req.err
}

// stream returns the state of a stream, making room if needed. Call with
// p.mu held.
func (p *Publisher) stream(t target) *streamState {
	st, ok := p.streams[t.stream]
	if ok {
		return st
	}
	if len(p.streams) >= maxCachedStreams {
		for id, s := range p.streams {
			if !s.busy {
				delete(p.streams, id)
			}
			if len(p.streams) < maxCachedStreams/2 {
				break
			}
		}
	}
	st = &streamState{key: t.key}
	p.streams[t.stream] = st
	return st
}

// take removes the calls to send next from the head of the queue: the
// head alone if it has its own expected versions, else the head and the
// following calls without any, up to MaxBatchEvents events. Calls whose
// context is done are failed instead. Call with p.mu held.
func (p *Publisher) take(st *streamState) []*pubRequest {
	var batch []*pubRequest
	n := 0
	for len(st.queue) > 0 {
		r := st.queue[0]
		if err := r.ctx.Err(); err != nil {
			st.queue = st.queue[1:]
			r.done, r.err = true, err
			if !r.leader {
				r.wake <- struct{}{}
			}
			continue
		}
		if len(batch) > 0 && (r.explicit || batch[0].explicit || n+len(r.events) > p.cfg.MaxBatchEvents) {
			break
		}
		st.queue = st.queue[1:]
		batch = append(batch, r)
		n += len(r.events)
	}
	return batch
}

// send appends the events of a batch with consecutive expected versions
// and returns what it then knows of the stream's version.
func (p *Publisher) send(t target, batch []*pubRequest, known bool, version int64) (bool, int64, error) {
	ctx, release := batchContext(batch)
	defer release()
	known, version, err := p.sendCtx(ctx, t, batch, known, version)
	if cause := contextCause(ctx, err); cause != nil {
		err = fmt.Errorf("%w (%w)", cause, err)
	}
	return known, version, err
}

// contextCause returns ctx's error when it is what ended a failed request:
// the client reports a request cut short by its context as a network
// timeout, and the network deadline, set from the context's, may pass
// before the context itself is marked done.
func contextCause(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	var ne net.Error
	if dl, ok := ctx.Deadline(); ok && errors.As(err, &ne) && ne.Timeout() && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

func (p *Publisher) sendCtx(ctx context.Context, t target, batch []*pubRequest, known bool, version int64) (bool, int64, error) {
	var events []sierradb.NewEvent
	var expect []*sierradb.ExpectedVersion
	for _, r := range batch {
		events = append(events, r.events...)
		expect = append(expect, r.expect...)
	}
	retry := !batch[0].explicit && p.cfg.MaxConflictRetries >= 0
	// Several writers racing on one stream spread out a little.
	spread := backoff.Policy{Initial: time.Millisecond, Max: 50 * time.Millisecond, Jitter: 1}.Start()
	for attempt := 0; ; attempt++ {
		if !known {
			v, err := p.cfg.Client.StreamVersion(ctx, t.stream)
			if err != nil {
				return false, 0, err
			}
			known, version = true, v
		}
		next, loose := version, false
		for i := range events {
			if e := expect[i]; e != nil {
				events[i].ExpectedVersion = *e
				n, exact := e.Exact()
				switch {
				case exact:
					next, loose = int64(n)+1, false
				case e.IsEmpty():
					next, loose = 0, false
				default:
					// Any or exists (a server without strict
					// versioning): what follows is unchecked too.
					loose = true
				}
				continue
			}
			if loose {
				events[i].ExpectedVersion = sierradb.ExpectAny
				continue
			}
			events[i].ExpectedVersion = sierradb.ExpectAfter(next)
			next++
		}
		last, err := p.appendEvents(ctx, t, events)
		if err == nil {
			return true, last, nil
		}
		var wv *sierradb.WrongExpectedVersionError
		if !errors.As(err, &wv) {
			// The outcome of a failed request is unknown: read the
			// version again next time.
			return false, 0, err
		}
		known, version = wv.Parsed, wv.Current
		if !retry || attempt >= p.cfg.MaxConflictRetries {
			if retry {
				err = fmt.Errorf("gave up after %d conflicts: %w", attempt+1, err)
			}
			return known, version, err
		}
		p.cfg.Logger.Debug("sierradb/pubsub: version conflict, appending again",
			"stream", t.stream, "current", wv.Current, "attempt", attempt+1)
		if attempt > 0 {
			if err := spread.Wait(ctx); err != nil {
				return known, version, err
			}
		}
	}
}

func (p *Publisher) appendEvents(ctx context.Context, t target, events []sierradb.NewEvent) (int64, error) {
	if len(events) == 1 {
		res, err := p.cfg.Client.Append(ctx, events[0])
		return int64(res.StreamVersion), err
	}
	res, err := p.cfg.Client.AppendMulti(ctx, t.key, events)
	if err != nil {
		return 0, err
	}
	return int64(res.Events[len(res.Events)-1].StreamVersion), nil
}

// batchContext returns a context that is done when every call of the batch
// has a done context: one caller giving up does not fail the others.
func batchContext(batch []*pubRequest) (context.Context, func()) {
	if len(batch) == 1 {
		return batch[0].ctx, func() {}
	}
	for _, r := range batch {
		if r.ctx.Done() == nil {
			return context.Background(), func() {}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var left atomic.Int32
	left.Store(int32(len(batch)))
	stops := make([]func() bool, len(batch))
	for i, r := range batch {
		stops[i] = context.AfterFunc(r.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}
