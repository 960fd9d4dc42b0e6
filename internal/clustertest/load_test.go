//go:build linux

package clustertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/internal/sierracluster"
	"github.com/esmill/esmill/sierradb"
)

// writers append through one cluster-aware client, each to streams of its
// own with exact expected versions, and record what was acknowledged.
type writers struct {
	client  *sierradb.Client
	streams [][]string

	mu          sync.Mutex
	acked       map[string]map[uint64]uuid.UUID // stream -> version -> id acknowledged
	late        int                             // events found stored after an append that failed
	attempts    int
	failed      int
	codes       map[string]int
	regressions int         // conflicts reporting a version below an acknowledged one
	ackTimes    []time.Time // every acknowledgement, in order

	wg    sync.WaitGroup
	stop  chan struct{}
	fatal chan error
}

// appendTimeout bounds one Append, failover included (the client's
// FailoverTimeout is 30 s).
const appendTimeout = 45 * time.Second

// startWriters starts one writer per element of streams.
func startWriters(t *testing.T, client *sierradb.Client, streams [][]string) *writers {
	w := &writers{client: client, streams: streams, acked: map[string]map[uint64]uuid.UUID{},
		codes: map[string]int{}, stop: make(chan struct{}), fatal: make(chan error, len(streams))}
	for i := range streams {
		w.wg.Add(1)
		go w.run(i)
	}
	t.Cleanup(w.halt)
	return w
}

// writerStreams returns n writers × k streams named prefix-w<i>-<j>,
// spread over the partitions.
func writerStreams(prefix string, n, k int) [][]string {
	out := make([][]string, n)
	for i := range out {
		for j := range k {
			out[i] = append(out[i], fmt.Sprintf("%s-w%d-%d", prefix, i, j))
		}
	}
	return out
}

func (w *writers) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
}

func (w *writers) stopped() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

func (w *writers) run(i int) {
	defer w.wg.Done()
	versions := map[string]int64{}
	pending := map[string]uuid.UUID{} // an event whose append failed, sent again
	for _, s := range w.streams[i] {
		versions[s] = -1
	}
	for k := 0; !w.stopped(); k++ {
		stream := w.streams[i][k%len(w.streams[i])]
		id, retry := pending[stream]
		if !retry {
			id = sierradb.NewEventID(sierradb.StreamPartitionKey(stream))
		}
		ctx, cancel := context.WithTimeout(context.Background(), appendTimeout)
		res, err := w.client.Append(ctx, sierradb.NewEvent{StreamID: stream, Name: "Happened", ID: id,
			ExpectedVersion: sierradb.ExpectAfter(versions[stream]), Payload: []byte(fmt.Sprintf(`{"w":%d,"k":%d}`, i, k))})
		cancel()
		w.mu.Lock()
		w.attempts++
		w.mu.Unlock()
		if err == nil {
			w.ack(stream, res.StreamVersion, id)
			versions[stream] = int64(res.StreamVersion)
			delete(pending, stream)
			continue
		}
		w.count(err)
		var wev *sierradb.WrongExpectedVersionError
		if errors.As(err, &wev) {
			if retry {
				// The earlier attempt may have been stored after all.
				if ev, ok := w.readBack(id); ok {
					w.mu.Lock()
					w.late++
					w.mu.Unlock()
					versions[stream] = int64(ev.StreamVersion)
					delete(pending, stream)
					continue
				}
			}
			if wev.Current < versions[stream] {
				w.mu.Lock()
				w.regressions++
				w.mu.Unlock()
			}
			versions[stream] = wev.Current
			delete(pending, stream)
			continue
		}
		pending[stream] = id
		select {
		case <-w.stop:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// readBack waits up to 2 s for an event to become readable.
func (w *writers) readBack(id uuid.UUID) (sierradb.Event, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	deadline := time.Now().Add(2 * time.Second)
	for {
		ev, err := w.client.Get(ctx, id)
		if err == nil {
			return ev, true
		}
		if time.Now().After(deadline) {
			return sierradb.Event{}, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *writers) ack(stream string, version uint64, id uuid.UUID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.acked[stream]
	if m == nil {
		m = map[uint64]uuid.UUID{}
		w.acked[stream] = m
	}
	m[version] = id
	w.ackTimes = append(w.ackTimes, time.Now())
}

func (w *writers) count(err error) {
	code := "connection"
	var se *sierradb.ServerError
	var wev *sierradb.WrongExpectedVersionError
	switch {
	case errors.As(err, &wev):
		code = "conflict"
	case errors.As(err, &se):
		code = se.Code
	case errors.Is(err, context.DeadlineExceeded):
		code = "timeout"
	}
	w.mu.Lock()
	w.failed++
	w.codes[code]++
	w.mu.Unlock()
}

// acks returns how many appends were acknowledged after t.
func (w *writers) acks(after time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	i, _ := slices.BinarySearchFunc(w.ackTimes, after, func(a, b time.Time) int { return a.Compare(b) })
	return len(w.ackTimes) - i
}

// waitAcks waits until n appends were acknowledged after t.
func (w *writers) waitAcks(t *testing.T, after time.Time, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for w.acks(after) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d appends acknowledged within %s (writers: %s)", w.acks(after), n, timeout, w.summary())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// longestGap is the longest time between two acknowledgements (of any
// writer) between from and to: the time without service.
func (w *writers) longestGap(from, to time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return sierracluster.LongestGap(w.ackTimes, from, to)
}

func (w *writers) summary() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, m := range w.acked {
		n += len(m)
	}
	codes := make([]string, 0, len(w.codes))
	for c, k := range w.codes {
		codes = append(codes, fmt.Sprintf("%s %d", c, k))
	}
	slices.Sort(codes)
	rate := 0.0
	if w.attempts > 0 {
		rate = 100 * float64(w.failed) / float64(w.attempts)
	}
	return fmt.Sprintf("%d appends acknowledged of %d attempts, %d errors (%.2f %%: %s), %d stored after an error, %d version regressions",
		n, w.attempts, w.failed, rate, strings.Join(codes, ", "), w.late, w.regressions)
}

// wasAcked reports whether the writers acknowledged id at stream@version.
func (w *writers) wasAcked(stream string, version uint64, id uuid.UUID) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked[stream][version] == id
}

// stored reads every writer stream back through the client and returns
// the readable events by id, and how many acknowledged appends are not
// readable (lost) or read with another id at their version. It waits up to
// settle for acknowledged versions to become readable.
func (w *writers) stored(t *testing.T, ctx context.Context, settle time.Duration) (readable map[uuid.UUID]sierradb.Event, lost, wrong int) {
	t.Helper()
	w.mu.Lock()
	acked := make(map[string]map[uint64]uuid.UUID, len(w.acked))
	for s, m := range w.acked {
		acked[s] = m
	}
	w.mu.Unlock()
	readable = map[uuid.UUID]sierradb.Event{}
	deadline := time.Now().Add(settle)
	for _, ws := range w.streams {
		for _, s := range ws {
			var top uint64
			for v := range acked[s] {
				top = max(top, v)
			}
			var evs []sierradb.Event
			for {
				evs = evs[:0]
				for ev, err := range w.client.ScanAll(ctx, s, 0) {
					if err != nil {
						t.Fatalf("read back %s: %v", s, err)
					}
					evs = append(evs, ev)
				}
				if len(acked[s]) == 0 || uint64(len(evs)) > top || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			byVersion := map[uint64]uuid.UUID{}
			for _, ev := range evs {
				readable[ev.ID] = ev
				byVersion[ev.StreamVersion] = ev.ID
			}
			for v, id := range acked[s] {
				got, ok := byVersion[v]
				switch {
				case !ok:
					lost++
				case got != id:
					wrong++
				}
			}
		}
	}
	return readable, lost, wrong
}
