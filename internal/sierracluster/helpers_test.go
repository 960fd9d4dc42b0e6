//go:build linux

package sierracluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// testCtx returns a context bounded by d and cancelled when t ends.
func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// dial opens a connection to node n, closed when t ends.
func dial(t testing.TB, ctx context.Context, n *Node) *Conn {
	t.Helper()
	c, err := n.Dial(ctx)
	if err != nil {
		t.Fatalf("dial node %d: %v", n.Index, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// event is the part of an event record the tests look at.
type event struct {
	ID        string
	Stream    string
	Partition int
	Seq       int64
	Version   int64
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func asInt(v any) int64 {
	i, _ := v.(int64)
	return i
}

func asString(v any) string {
	s, _ := v.(string)
	return s
}

func toEvent(v any) event {
	m := asMap(v)
	return event{
		ID:        asString(m["event_id"]),
		Stream:    asString(m["stream_id"]),
		Partition: int(asInt(m["partition_id"])),
		Seq:       asInt(m["partition_sequence"]),
		Version:   asInt(m["stream_version"]),
	}
}

// appendTo appends one event to stream with an expected version ("empty"
// or a number) and returns the reply as an event.
func appendTo(ctx context.Context, c *Conn, stream, expected string) (event, error) {
	v, err := c.Do(ctx, "EAPPEND", stream, "Happened", "EXPECTED_VERSION", expected)
	if err != nil {
		return event{}, err
	}
	m := asMap(v)
	return event{
		ID:        asString(m["event_id"]),
		Stream:    stream,
		Partition: int(asInt(m["partition_id"])),
		Seq:       asInt(m["partition_sequence"]),
		Version:   asInt(m["stream_version"]),
	}, nil
}

// scanPartition reads every confirmed event of partition p that node c
// serves (its own copy when it holds the partition).
func scanPartition(ctx context.Context, c *Conn, p int) ([]event, error) {
	var out []event
	from := int64(0)
	for {
		v, err := c.Do(ctx, "EPSCAN", strconv.Itoa(p), strconv.FormatInt(from, 10), "+", "COUNT", "500")
		if err != nil {
			return out, err
		}
		m := asMap(v)
		evs, _ := m["events"].([]any)
		for _, e := range evs {
			ev := toEvent(e)
			out = append(out, ev)
			from = ev.Seq + 1
		}
		if len(evs) == 0 || m["has_more"] != true {
			return out, nil
		}
	}
}

// scanStream reads a whole stream through c.
func scanStream(ctx context.Context, c *Conn, stream string) ([]event, error) {
	v, err := c.Do(ctx, "ESCAN", stream, "-", "+", "COUNT", "100000")
	if err != nil {
		return nil, err
	}
	evs, _ := asMap(v)["events"].([]any)
	out := make([]event, len(evs))
	for i, e := range evs {
		out[i] = toEvent(e)
	}
	return out, nil
}

// subscription is an EPSUB on its own connection whose events are read by
// a goroutine owned by the test; stop joins it.
type subscription struct {
	conn   *Conn
	events chan event
	done   chan struct{}
	err    error // set before done is closed
	once   sync.Once
}

// subscribe sends EPSUB with args (e.g. "*", "FROM", "0") to node n and
// reads its events, acknowledging each so the window never stalls.
func subscribe(t testing.TB, ctx context.Context, n *Node, args ...string) *subscription {
	t.Helper()
	conn, err := n.Dial(ctx)
	if err != nil {
		t.Fatalf("dial node %d: %v", n.Index, err)
	}
	id, err := conn.Do(ctx, append([]string{"EPSUB"}, args...)...)
	if err != nil {
		conn.Close()
		t.Fatalf("EPSUB on node %d: %v", n.Index, err)
	}
	s := &subscription{conn: conn, events: make(chan event, 100000), done: make(chan struct{})}
	go s.run(asString(id))
	t.Cleanup(s.stop)
	return s
}

func (s *subscription) run(id string) {
	defer close(s.done)
	for {
		// No deadline: the subscription ends when stop closes the
		// connection or the node goes away.
		p, err := s.conn.Next(context.Background())
		if err != nil {
			s.err = err
			return
		}
		if len(p) == 4 && p[0] == "message" {
			cursor := asInt(p[2])
			select {
			case s.events <- toEvent(p[3]):
			default:
				s.err = errors.New("test subscription buffer full")
				return
			}
			if err := s.conn.Send(context.Background(), "EACK", id, strconv.FormatInt(cursor, 10)); err != nil {
				s.err = err
				return
			}
		}
	}
}

// stop closes the connection and waits for the reader.
func (s *subscription) stop() {
	s.once.Do(func() { s.conn.Close() })
	<-s.done
}

// ended reports whether the subscription's connection has ended, and why.
func (s *subscription) ended() (bool, error) {
	select {
	case <-s.done:
		return true, s.err
	default:
		return false, nil
	}
}

// collect reads events until stop returns true for one, or ctx ends.
func (s *subscription) collect(ctx context.Context, until func(event) bool) ([]event, error) {
	var got []event
	for {
		select {
		case e := <-s.events:
			got = append(got, e)
			if until(e) {
				return got, nil
			}
		case <-s.done:
			// Drain what was read before the end.
			for {
				select {
				case e := <-s.events:
					got = append(got, e)
					if until(e) {
						return got, nil
					}
				default:
					return got, fmt.Errorf("subscription ended: %v", s.err)
				}
			}
		case <-ctx.Done():
			return got, ctx.Err()
		}
	}
}

// isClosed reports whether err says the connection went away.
func isClosed(err error) bool {
	var ne net.Error
	return err != nil && (errors.Is(err, net.ErrClosed) || errors.As(err, &ne) || err.Error() == "EOF")
}

// coordinators finds, for every partition, the node that coordinates its
// writes: the only node that answers an append with an impossible
// expected version with WRONGVER itself (the others forward it and answer
// REMOTEOPFAILED). It returns -1 for a partition whose coordinator no
// node reports that way, and the number of nodes that did, per partition.
func coordinators(t testing.TB, ctx context.Context, c *Cluster) (coord []int, count []int) {
	t.Helper()
	keys := probeKeys(c.cfg.EffectivePartitions())
	coord = make([]int, len(keys))
	count = make([]int, len(keys))
	for i := range coord {
		coord[i] = -1
	}
	for _, n := range c.Nodes() {
		if !n.Running() {
			continue
		}
		conn, err := n.Dial(ctx)
		if err != nil {
			t.Fatalf("dial node %d: %v", n.Index, err)
		}
		for p, key := range keys {
			_, err := conn.Do(ctx, "EAPPEND", probeStream, "Probe", "PARTITION_KEY", key.String(), "EXPECTED_VERSION", "1000000000")
			var e *Error
			if errors.As(err, &e) && e.Code == "WRONGVER" {
				coord[p] = n.Index
				count[p]++
			}
		}
		conn.Close()
	}
	return coord, count
}
