//go:build linux

package sierracluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// eventIDFor returns a fresh event id that embeds the partition hash of key,
// as SierraDB requires of a client-chosen EVENT_ID; choosing it lets a
// writer recognise its own event after an append whose reply was lost.
func eventIDFor(key uuid.UUID) string {
	h := uint16(binary.BigEndian.Uint64(key[8:16]) >> 46)
	u := uuid.Must(uuid.NewV7())
	u[8] = 0x80 | byte((h>>10)&0x3F)
	u[9] = byte(h >> 2)
	u[10] = (u[10] & 0x3F) | byte((h&3)<<6)
	return u.String()
}

// errCode names an append error for the counts: its code, or a short
// description of a connection error.
func errCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		code := e.Code
		if code == "" {
			code = "(no code)"
		}
		switch {
		case code == "REMOTEOPFAILED" && strings.Contains(e.Msg, "current stream version is"):
			return "REMOTEOPFAILED(wrongver)"
		case code == "REMOTEOPFAILED" && strings.Contains(e.Msg, "all replica nodes failed"):
			return "REMOTEOPFAILED(allreplicasfailed)"
		case code == "REMOTEOPFAILED" && strings.Contains(e.Msg, "dial failure"):
			return "REMOTEOPFAILED(dial)"
		case code == "REMOTEOPFAILED" && strings.Contains(e.Msg, "timed out"):
			return "REMOTEOPFAILED(timeout)"
		}
		return code
	}
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "i/o timeout") {
		return "client timeout"
	}
	return "connection"
}

// load runs writers that append to their own streams with exact expected
// versions, failing over to the next node on any error, and records what
// was acknowledged.
type load struct {
	c       *Cluster
	streams [][]string // per writer

	mu          sync.Mutex
	acked       map[string][]string // stream -> acknowledged event ids in version order
	unknown     map[string]bool     // event ids whose append failed without a clear answer
	errs        map[string]int      // by errCode
	attempts    int
	regressions int           // conflicts that reported a stream version below the acknowledged one
	okTimes     []time.Time   // time of every acknowledgement
	byWriter    [][]time.Time // the same, per writer
	wg          sync.WaitGroup
	stop        chan struct{}
	fatal       chan error
}

// startLoad starts one writer per element of streams; writer i starts on
// node i mod N.
func startLoad(t testing.TB, c *Cluster, streams [][]string) *load {
	l := &load{c: c, streams: streams, acked: map[string][]string{}, unknown: map[string]bool{},
		errs: map[string]int{}, stop: make(chan struct{}), fatal: make(chan error, len(streams)),
		byWriter: make([][]time.Time, len(streams))}
	for i := range streams {
		l.wg.Add(1)
		go l.writer(i)
	}
	t.Cleanup(l.halt)
	return l
}

// halt stops the writers and waits for them.
func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// attemptTimeout bounds one append: longer than the server's own 10 s
// write timeout, so its answer is seen.
const attemptTimeout = 12 * time.Second

func (l *load) writer(i int) {
	defer l.wg.Done()
	nodes := l.c.Nodes()
	node := i % len(nodes)
	var conn *Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	versions := map[string]int{}   // next version per stream
	pending := map[string]string{} // stream -> event id of an attempt whose outcome is unknown
	for k := 0; ; k++ {
		select {
		case <-l.stop:
			return
		default:
		}
		stream := l.streams[i][k%len(l.streams[i])]
		if conn == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			c, err := nodes[node].Dial(ctx)
			cancel()
			if err != nil {
				l.count(err)
				node = (node + 1) % len(nodes)
				l.pause()
				continue
			}
			conn = c
		}
		expected := "empty"
		v := versions[stream]
		if v > 0 {
			expected = strconv.Itoa(v - 1)
		}
		// After an append whose outcome is unknown, the same event is sent
		// again with the same expected version: it either lands now, or
		// the conflict says the earlier attempt landed.
		id, retry := pending[stream]
		if !retry {
			id = eventIDFor(PartitionKey(stream))
		}
		ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
		_, err := conn.Do(ctx, "EAPPEND", stream, "Happened", "EVENT_ID", id, "EXPECTED_VERSION", expected)
		cancel()
		l.mu.Lock()
		l.attempts++
		l.mu.Unlock()
		if err == nil {
			l.resolved(i, stream, id, true)
			delete(pending, stream)
			versions[stream]++
			continue
		}
		l.count(err)
		if IsVersionConflict(err) {
			if !retry {
				// Only this writer writes the stream, so the server has
				// lost track of acknowledged versions (seen after a cut-off
				// coordinator comes back). Count it and carry on from the
				// version the server reports, as a client that re-reads
				// would.
				cur := currentVersion(err)
				l.mu.Lock()
				l.regressions++
				l.mu.Unlock()
				versions[stream] = cur + 1
				conn.Close()
				conn = nil
				node = (node + 1) % len(nodes)
				continue
			}
			// Only this writer writes the stream, so version v holds the
			// earlier attempt; wait until it can be read to make sure.
			got, length, err := l.readVersion(conn, stream, v)
			if err != nil {
				l.count(err)
				conn.Close()
				conn = nil
				node = (node + 1) % len(nodes)
				l.pause()
				continue
			}
			if got != id {
				// Version v holds an event this writer never had
				// acknowledged: the stream's history went back and was
				// written again (a cut-off coordinator came back). Count
				// it and carry on from the stream's end.
				l.mu.Lock()
				l.regressions++
				l.mu.Unlock()
				l.resolved(i, stream, id, false)
				delete(pending, stream)
				versions[stream] = length
				continue
			}
			l.resolved(i, stream, id, true)
			delete(pending, stream)
			versions[stream]++
			continue
		}
		if !retry {
			pending[stream] = id
			l.mu.Lock()
			l.unknown[id] = true
			l.mu.Unlock()
		}
		conn.Close()
		conn = nil
		node = (node + 1) % len(nodes)
		l.pause()
	}
}

// readVersion waits (up to attemptTimeout) until version v of stream can be
// read through conn and returns its event id and the stream's length.
func (l *load) readVersion(conn *Conn, stream string, v int) (string, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
	defer cancel()
	for {
		evs, err := scanStream(ctx, conn, stream)
		if err != nil {
			return "", 0, err
		}
		if len(evs) > v {
			return evs[v].ID, len(evs), nil
		}
		select {
		case <-ctx.Done():
			return "", 0, fmt.Errorf("version %d of %s not readable: %w", v, stream, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// resolved records the outcome of an event's append.
func (l *load) resolved(writer int, stream, id string, ok bool) {
	l.mu.Lock()
	delete(l.unknown, id)
	l.mu.Unlock()
	if ok {
		l.ack(writer, stream, id)
	}
}

func (l *load) pause() {
	select {
	case <-l.stop:
	case <-time.After(50 * time.Millisecond):
	}
}

func (l *load) ack(writer int, stream, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.acked[stream] = append(l.acked[stream], id)
	l.okTimes = append(l.okTimes, now)
	l.byWriter[writer] = append(l.byWriter[writer], now)
}

// recovery returns, over the writers, the longest time from t until the
// writer's first acknowledgement after t, and how many writers had one.
func (l *load) recovery(t time.Time) (longest time.Duration, recovered int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, times := range l.byWriter {
		for _, at := range times {
			if at.After(t) {
				longest = max(longest, at.Sub(t))
				recovered++
				break
			}
		}
	}
	return longest, recovered
}

func (l *load) count(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs[errCode(err)]++
}

// ackedSince counts acknowledgements after t.
func (l *load) ackedSince(t time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, at := range l.okTimes {
		if at.After(t) {
			n++
		}
	}
	return n
}

// waitAcked waits until n appends have been acknowledged after t.
func (l *load) waitAcked(tb testing.TB, ctx context.Context, t time.Time, n int) time.Duration {
	tb.Helper()
	return waitFor(tb, ctx, fmt.Sprintf("%d acknowledged appends", n), func() error {
		select {
		case err := <-l.fatal:
			tb.Fatal(err)
		default:
		}
		if got := l.ackedSince(t); got < n {
			return fmt.Errorf("%d so far", got)
		}
		return nil
	})
}

// gaps returns the longest time without any acknowledgement between from
// and to.
func (l *load) longestGap(from, to time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return LongestGap(l.okTimes, from, to)
}

// summary describes the attempts and errors.
func (l *load) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	acked := 0
	for _, ids := range l.acked {
		acked += len(ids)
	}
	var codes []string
	for code, n := range l.errs {
		codes = append(codes, fmt.Sprintf("%s×%d", code, n))
	}
	slices.Sort(codes)
	failed := 0
	for _, n := range l.errs {
		failed += n
	}
	return fmt.Sprintf("%d attempts, %d acknowledged, %d errors (%.1f%%): %s; %d outcomes still unknown; %d stream versions went backwards",
		l.attempts, acked, failed, 100*float64(failed)/float64(max(l.attempts, 1)), strings.Join(codes, ", "), len(l.unknown), l.regressions)
}

// verification counts what verify found.
type verification struct {
	Acked    int // acknowledged appends checked
	Lost     int // acknowledged, on no holder
	Missing  int // acknowledged, absent from some running holder's copy
	Dup      int // an event id more than once in a copy
	Diverged int // partitions whose holders disagree on a sequence
}

func (v verification) String() string {
	return fmt.Sprintf("%d acknowledged appends: %d lost, %d missing on some replica, %d duplicated, %d partitions diverged",
		v.Acked, v.Lost, v.Missing, v.Dup, v.Diverged)
}

// verify checks every acknowledged append against every running holder's
// copy of its partition: present exactly once; and that the holders agree
// on every partition sequence. It gives replicas up to 15 s (within ctx)
// to converge first.
func (l *load) verify(t testing.TB, ctx context.Context) (v verification) {
	t.Helper()
	l.mu.Lock()
	acked := map[string][]string{}
	for s, ids := range l.acked {
		acked[s] = slices.Clone(ids)
	}
	l.mu.Unlock()
	parts := l.c.Config().EffectivePartitions()
	byPart := map[int][]string{}
	for s, ids := range acked {
		p := PartitionOf(PartitionKey(s), parts)
		byPart[p] = append(byPart[p], ids...)
	}
	conns := map[int]*Conn{}
	for _, n := range l.c.Nodes() {
		if n.Running() {
			conns[n.Index] = dial(t, ctx, n)
		}
	}
	// Give the replicas up to 10 s (within ctx) to hold every acknowledged
	// event, then compare what they hold.
	copies := map[int]map[int][]event{} // partition -> node -> events
	deadline := time.Now().Add(10 * time.Second)
	for {
		complete := true
		for p, ids := range byPart {
			copies[p] = map[int][]event{}
			for _, o := range l.c.Owners(p) {
				conn, ok := conns[o]
				if !ok {
					continue
				}
				evs, err := scanPartition(ctx, conn, p)
				if err != nil {
					t.Fatalf("EPSCAN %d on node %d: %v", p, o, err)
				}
				copies[p][o] = evs
				have := map[string]bool{}
				for _, e := range evs {
					have[e.ID] = true
				}
				for _, id := range ids {
					if !have[id] {
						complete = false
						break
					}
				}
			}
		}
		if complete || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for p, ids := range byPart {
		v.Acked += len(ids)
		var ref []event
		refNode := -1
		seen := map[string]bool{}
		for _, evs := range copies[p] {
			for _, e := range evs {
				seen[e.ID] = true
			}
		}
		for _, id := range ids {
			if !seen[id] {
				v.Lost++
			}
		}
		for o, evs := range copies[p] {
			count := map[string]int{}
			for _, e := range evs {
				count[e.ID]++
			}
			for _, id := range ids {
				switch count[id] {
				case 0:
					if seen[id] {
						v.Missing++
					}
				case 1:
				default:
					v.Dup++
					t.Logf("partition %d: event %s %d times on node %d", p, id, count[id], o)
				}
			}
			if ref == nil {
				ref, refNode = evs, o
				continue
			}
			n := min(len(ref), len(evs))
			for i := range n {
				if ref[i].ID != evs[i].ID || ref[i].Seq != evs[i].Seq {
					v.Diverged++
					t.Logf("partition %d: sequence %d is %s on node %d but %s (seq %d) on node %d",
						p, ref[i].Seq, ref[i].ID, refNode, evs[i].ID, evs[i].Seq, o)
					break
				}
			}
		}
	}
	return v
}

var currentVersionText = regexp.MustCompile(`current stream version is (\d+|empty)`)

// currentVersion reads the current version out of a version conflict: -1
// for an empty stream.
func currentVersion(err error) int {
	m := currentVersionText.FindStringSubmatch(err.Error())
	if m == nil || m[1] == "empty" {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// acksWithin waits until n appends have been acknowledged after t, or d
// has passed, and returns how many were.
func (l *load) acksWithin(t time.Time, n int, d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		got := l.ackedSince(t)
		if got >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}
