package aggregate

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
)

// Group commit (WithGroupCommit): the appends of concurrent commands on
// different entities that share a partition key are joined into one
// EMAPPEND, each event keeping its own expected version. SierraDB applies
// such an append atomically: when one expected version is wrong (or the
// append fails otherwise), nothing of it is stored, and every command of
// the group is appended again on its own, so that each sees exactly the
// outcome it would have seen alone.

// maxGroupEvents bounds the events of one joined append.
const maxGroupEvents = 1000

// groupFlushers bounds the joined appends of one partition key in flight
// at a time. One: measured on the real SierraDB (BenchmarkGroupCommit),
// two in flight split the callers into one large and one tiny batch and
// carried no more.
const groupFlushers = 1

// maxLinger bounds how long a flusher waits for the members of its last
// joined append to queue again before it sends a smaller one.
const maxLinger = 2 * time.Millisecond

// WithGroupCommit lets concurrent commands on different entities of this
// type that share a partition key (see [WithPartitionKey]) be appended
// together, in one EMAPPEND per partition key at a time: while one append
// of a key is in flight, the appends that arrive for that key wait and go
// out together when it ends (after waiting up to 2 ms, and at most a
// quarter of the last append's time, for as many as the last append
// carried). It pays off when many entities share a key
// and the store's cost is per request (the real SierraDB takes tens of
// milliseconds per append, whatever its size); it binds those streams to
// one partition, as transactions already do, and gains nothing for types
// whose entities each have their own key. A conflict (or any failure) of
// the joined append makes each command's append run again on its own, so
// that no command sees another's failure (tested:
// TestGroupCommitConflictIsolated).
func WithGroupCommit[S any]() Option[S] {
	return optionFunc[S](func(b *typeBuilder[S]) error { b.groupCommit = true; return nil })
}

// groupReq is one command's append waiting in a group.
type groupReq struct {
	events []sierradb.NewEvent
	reply  chan appendReply // buffered (1): the flusher's one send does not wait for the reader
}

// group is the queue of one partition key; a flusher goroutine runs while
// it is busy.
type group struct {
	queue    []*groupReq
	flushers int
	arrived  chan struct{} // a request joined the queue (capacity 1: a hint)
	last     int           // members of the last joined append
	took     time.Duration // and how long it took
}

// groups joins the appends of group-committed types by partition key.
type groups struct {
	mu    sync.Mutex
	byKey map[uuid.UUID]*group
}

// appendFor appends a command's events, through the group of their
// partition key when the type is defined WithGroupCommit.
func (x *Executor) appendFor(ctx context.Context, k kind, key uuid.UUID, events []sierradb.NewEvent) (sierradb.MultiAppendResult, error) {
	if k.groupCommitted() {
		return x.groupAppend(ctx, key, events)
	}
	return x.appendMulti(ctx, key, events)
}

// groupAppend appends events (of one command) through the group of key,
// answering when the append that carried them ended. Like appendMulti, it
// returns as soon as ctx ends (the append goes on; Close waits for it).
func (x *Executor) groupAppend(ctx context.Context, key uuid.UUID, events []sierradb.NewEvent) (sierradb.MultiAppendResult, error) {
	r := &groupReq{events: events, reply: make(chan appendReply, 1)}
	g := &x.groups
	g.mu.Lock()
	if g.byKey == nil {
		g.byKey = make(map[uuid.UUID]*group)
	}
	q := g.byKey[key]
	if q == nil {
		q = &group{arrived: make(chan struct{}, 1)}
		g.byKey[key] = q
	}
	q.queue = append(q.queue, r)
	select {
	case q.arrived <- struct{}{}:
	default:
	}
	if q.flushers < groupFlushers {
		q.flushers++
		x.inflight.Add(1)
		go x.flushGroup(key, q)
	}
	g.mu.Unlock()
	select {
	case rep := <-r.reply:
		return rep.res, rep.err
	case <-ctx.Done():
		select {
		case rep := <-r.reply:
			return rep.res, rep.err
		default:
		}
		return sierradb.MultiAppendResult{}, fmt.Errorf("%w: %w", errAbandoned, ctx.Err())
	}
}

// flushGroup sends the queue of key, one joined append at a time, until it
// is empty. The appends do not take a caller's context: they serve several
// callers, and the client bounds each request by its own timeouts.
//
// When an append ends, its callers are answered at once, but they come
// back with their next commands one after the other; a flusher that sent
// whatever had queued by then would send a few of them and keep the rest
// waiting a whole append. So it lingers until as many requests have
// queued as the last append carried, for at most a quarter of that
// append's time and maxLinger: callers that do not come back cost the
// next append that much.
func (x *Executor) flushGroup(key uuid.UUID, q *group) {
	defer x.inflight.Done()
	g := &x.groups
	ctx := context.Background()
	var linger *time.Timer
	defer func() {
		if linger != nil {
			linger.Stop()
		}
	}()
	for {
		g.mu.Lock()
		if len(q.queue) == 0 {
			if q.flushers--; q.flushers == 0 {
				delete(g.byKey, key)
			}
			g.mu.Unlock()
			return
		}
		if len(q.queue) < q.last && q.took > 0 {
			wait := min(q.took/4, maxLinger)
			if linger == nil {
				linger = time.NewTimer(wait)
			} else {
				linger.Reset(wait)
			}
			for waiting := true; waiting && len(q.queue) < q.last; {
				g.mu.Unlock()
				select {
				case <-q.arrived:
				case <-linger.C:
					waiting = false
				}
				g.mu.Lock()
			}
			linger.Stop()
		}
		n, events := 0, 0
		for n < len(q.queue) && (n == 0 || events+len(q.queue[n].events) <= maxGroupEvents) {
			events += len(q.queue[n].events)
			n++
		}
		batch := q.queue[:n:n]
		q.queue = q.queue[n:]
		g.mu.Unlock()
		began := time.Now()
		x.appendGroup(ctx, key, batch, events)
		g.mu.Lock()
		q.last, q.took = n, time.Since(began)
		g.mu.Unlock()
	}
}

// appendGroup appends a batch as one request, or, when that fails, each
// of its members alone (concurrently).
func (x *Executor) appendGroup(ctx context.Context, key uuid.UUID, batch []*groupReq, total int) {
	if len(batch) == 1 {
		res, err := x.store.AppendMulti(ctx, key, batch[0].events)
		batch[0].reply <- appendReply{res, err}
		return
	}
	all := make([]sierradb.NewEvent, 0, total)
	for _, r := range batch {
		all = append(all, r.events...)
	}
	res, err := x.store.AppendMulti(ctx, key, all)
	if err == nil && len(res.Events) == total {
		off := 0
		for _, r := range batch {
			part := res
			part.Events = res.Events[off : off+len(r.events) : off+len(r.events)]
			part.FirstPartitionSequence = part.Events[0].PartitionSequence
			part.LastPartitionSequence = part.Events[len(part.Events)-1].PartitionSequence
			off += len(r.events)
			r.reply <- appendReply{res: part}
		}
		return
	}
	// Nothing of the joined append is known to be stored (SierraDB stores
	// all of it or nothing; when its outcome is unknown, the expected
	// versions make a second copy fail). Each member runs alone.
	var wg sync.WaitGroup
	for _, r := range batch {
		wg.Go(func() {
			res, err := x.store.AppendMulti(ctx, key, r.events)
			r.reply <- appendReply{res, err}
		})
	}
	wg.Wait()
}
