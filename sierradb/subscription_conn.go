package sierradb

// The connection side of a subscription: one connection generation at a
// time, its EPSUB request, the push frames it delivers, the EACKs written
// back, and the reconnection between generations.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/internal/backoff"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// command builds the EPSUB request from the positions reached so far.
func (s *Subscription) command() []string {
	sel := "*"
	if !s.spec.all {
		ids := make([]string, len(s.spec.partitions))
		for i, p := range s.spec.partitions {
			ids[i] = strconv.Itoa(int(p))
		}
		sel = strings.Join(ids, ",")
	}
	args := []string{"EPSUB", sel, "FROM", "MAP"}
	for _, p := range s.spec.partitions {
		args = append(args, strconv.Itoa(int(p))+"="+strconv.FormatUint(s.spec.next[p], 10))
	}
	return append(args, "WINDOW", strconv.Itoa(s.spec.window))
}

// connect dials, subscribes and waits for the confirmation.
func (s *Subscription) connect(ctx context.Context, gen uint32) (net.Conn, *resp3.Reader, string, error) {
	conn, err := s.c.cfg.Dialer(ctx, "tcp", s.addr)
	if err != nil {
		return nil, nil, "", fmt.Errorf("sierradb: subscribe to %s: %w", s.spec.what, err)
	}
	s.mu.Lock()
	if s.isClosing() {
		s.mu.Unlock()
		conn.Close()
		return nil, nil, "", ErrClosed
	}
	s.conn = conn
	s.acks = ackState{gen: gen, mark: -1, sent: -1, pending: make(map[uint64]struct{})}
	s.recv.Store(-1)
	s.lastPush.Store(time.Now().UnixNano())
	s.mu.Unlock()

	fail := func(err error) (net.Conn, *resp3.Reader, string, error) {
		conn.Close()
		return nil, nil, "", fmt.Errorf("sierradb: subscribe to %s: %w", s.spec.what, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(s.c.cfg.ReadTimeout))
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	w := resp3.NewWriter(conn)
	w.WriteCommand(s.command()...)
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	r := resp3.NewReader(conn)
	v, err := r.ReadValue()
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fail(err)
	}
	if v.IsError() {
		return fail(serverError(string(v.Str)))
	}
	if v.Type != resp3.SimpleString && v.Type != resp3.BlobString {
		return fail(fmt.Errorf("unexpected subscribe reply %s", v))
	}
	subID := string(v.Str)
	if !stop() {
		return fail(ctx.Err())
	}
	conn.SetDeadline(time.Time{})
	return conn, r, subID, nil
}

// run owns the subscription's connection generations until Close. It
// reconnects after a lost connection, waiting between attempts with the
// client's reconnection backoff.
func (s *Subscription) run(conn net.Conn, r *resp3.Reader, subID string) {
	defer close(s.done)
	defer close(s.events)
	defer s.c.forget(s)
	defer s.cancel()
	gen := uint32(1)
	b := backoff.Policy{Initial: s.c.cfg.ReconnectMinBackoff, Max: s.c.cfg.ReconnectMaxBackoff, Jitter: 0.5}.Start()
	for {
		err := s.serve(conn, r, subID, gen)
		conn.Close()
		if s.isClosing() {
			return
		}
		if s.heldGen.Load() == gen {
			// The live check closed the connection: resubscribe at once
			// from the position reached.
			gen++
			if s.spec.resume != nil {
				if err := s.spec.resume(s.ctx, maps.Clone(s.spec.next)); err != nil {
					if !s.isClosing() {
						s.setErr(err)
					}
					return
				}
			}
			if conn, r, subID, err = s.connect(s.ctx, gen); err == nil {
				continue
			}
			if s.isClosing() {
				return
			}
		}
		if s.leg {
			// The cluster subscription owning this leg decides where to
			// go on.
			if err == nil {
				err = io.EOF
			}
			s.setErr(err)
			return
		}
		var se *ServerError
		if errors.As(err, &se) && !IsRetryable(err) {
			s.setErr(err)
			return
		}
		s.c.cfg.Logger.Warn("sierradb: subscription connection lost; reconnecting",
			"subscription", s.spec.what, "error", err)
		for {
			if b.Wait(s.ctx) != nil {
				select {
				case <-s.c.closing:
					s.setErr(ErrClosed)
				default:
				}
				return
			}
			if s.spec.resume != nil {
				if err := s.spec.resume(s.ctx, maps.Clone(s.spec.next)); err != nil {
					if !s.isClosing() {
						s.setErr(err)
					}
					return
				}
			}
			gen++
			conn, r, subID, err = s.connect(s.ctx, gen)
			if err == nil {
				b.Reset()
				break
			}
			if s.isClosing() {
				return
			}
			if errors.As(err, &se) && !IsRetryable(err) {
				s.setErr(err)
				return
			}
			s.c.cfg.Logger.Warn("sierradb: subscription reconnect failed", "subscription", s.spec.what, "error", err)
		}
	}
}

func (s *Subscription) setErr(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

// serve reads one connection generation until it fails or the subscription
// closes. A second goroutine writes the acknowledgements.
func (s *Subscription) serve(conn net.Conn, r *resp3.Reader, subID string, gen uint32) error {
	stopAcks := make(chan struct{})
	ackErr := make(chan error, 1)
	go func() { ackErr <- s.writeAcks(conn, subID, stopAcks) }()
	checked := make(chan struct{})
	if s.heads != nil && s.c.cfg.LiveCheckInterval > 0 {
		go func() {
			defer close(checked)
			s.checkLive(conn, gen, stopAcks)
		}()
	} else {
		close(checked)
	}
	defer func() {
		close(stopAcks)
		<-ackErr
		<-checked
	}()
	for {
		v, err := r.ReadValue()
		if err != nil {
			return err
		}
		switch {
		case v.Type == resp3.Push:
			if err := s.handlePush(v, subID, gen); err != nil {
				return err
			}
		case v.IsError():
			// The reply to an EACK: the server's subscription task has
			// ended (the server is shutting down, or no longer knows
			// it). Like a cut connection, this is resumed on a new one
			// from the last delivered event: ending the subscription
			// here would turn a node's shutdown into a consumer's
			// failure (tested: TestDivergedOneVocabulary, where a
			// cluster node is closed under a projection).
			return fmt.Errorf("sierradb: the server ended the subscription (its reply to EACK: %s)", v.Str)
		}
	}
}

func (s *Subscription) handlePush(v resp3.Value, subID string, gen uint32) error {
	if len(v.Elems) < 2 || !v.Elems[0].IsString() {
		return fmt.Errorf("sierradb: malformed push %s", v)
	}
	if string(v.Elems[0].Str) != "message" {
		return nil
	}
	if len(v.Elems) != 4 || string(v.Elems[1].Str) != subID || v.Elems[2].Type != resp3.Integer {
		return fmt.Errorf("sierradb: malformed message push")
	}
	ev, err := eventFromValue(v.Elems[3])
	if err != nil {
		return err
	}
	ev.tag = eventTag{sub: s, gen: gen, cursor: uint64(v.Elems[2].Int)}
	s.lastPush.Store(time.Now().UnixNano())
	s.recv.Store(v.Elems[2].Int)
	if next, ok := s.spec.next[ev.PartitionID]; ok && ev.PartitionSequence < next {
		// Already delivered before a reconnection.
		s.ack(ev.tag)
		return nil
	}
	if s.spec.filter != nil && !s.spec.filter(&ev) {
		s.setNext(ev.PartitionID, ev.PartitionSequence+1)
		s.ack(ev.tag)
		return nil
	}
	select {
	case s.events <- ev:
		s.setNext(ev.PartitionID, ev.PartitionSequence+1)
		return nil
	case <-s.closing:
		return ErrClosed
	}
}

func (s *Subscription) setNext(p uint16, next uint64) {
	s.nextMu.Lock()
	s.spec.next[p] = next
	s.nextMu.Unlock()
}

// checkLive runs beside one connection generation (Config.LiveCheckInterval).
// Each interval in which nothing was pushed and everything pushed was
// acknowledged to the server, it reads the server's partition heads; a
// partition whose head is past the subscription's position at two such
// checks in a row, with the position unchanged, is one whose confirmed
// events the server holds back. It then closes the connection, and run
// resubscribes at once from the position reached.
func (s *Subscription) checkLive(conn net.Conn, gen uint32, stop <-chan struct{}) {
	every := s.c.cfg.LiveCheckInterval
	t := time.NewTicker(every)
	defer t.Stop()
	var suspect map[uint16]uint64 // partition -> position at the previous check
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		settled := s.acks.gen == gen && s.acks.sent >= s.recv.Load()
		s.mu.Unlock()
		if !settled || time.Since(time.Unix(0, s.lastPush.Load())) < every {
			suspect = nil
			continue
		}
		s.nextMu.Lock()
		next := maps.Clone(s.spec.next)
		s.nextMu.Unlock()
		ctx, cancel := context.WithTimeout(s.ctx, s.c.cfg.ReadTimeout)
		heads, err := s.heads(ctx, s.spec.partitions)
		cancel()
		if err != nil {
			// A server that fails shows in the connection itself.
			suspect = nil
			continue
		}
		past := map[uint16]uint64{}
		var held []uint16
		for _, p := range s.spec.partitions {
			n, ok := next[p]
			if !ok || heads[p] < int64(n) {
				continue
			}
			past[p] = n
			if prev, ok := suspect[p]; ok && prev == n {
				held = append(held, p)
			}
		}
		suspect = past
		if len(held) == 0 {
			continue
		}
		counter := s
		if s.owner != nil {
			counter = s.owner
		}
		counter.resubs.Add(1)
		s.c.cfg.Logger.Warn("sierradb: the server holds back confirmed events of a subscription; resubscribing from its position",
			"subscription", s.spec.what, "partitions", held, "idle", every*2)
		s.heldGen.Store(gen)
		conn.Close()
		return
	}
}

// ackFlushDelay is how long acknowledgements may gather before an EACK is
// sent, unless enough have gathered to send at once.
const ackFlushDelay = 2 * time.Millisecond

func (s *Subscription) writeAcks(conn net.Conn, subID string, stop <-chan struct{}) error {
	w := resp3.NewWriter(conn)
	threshold := int64(max(1, s.spec.window/4))
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	armed := false
	for {
		flush := false
		select {
		case <-stop:
			return nil
		case <-s.notify:
		case <-timer.C:
			armed = false
			flush = true
		}
		s.mu.Lock()
		mark, sent := s.acks.mark, s.acks.sent
		if mark > sent && (flush || mark-sent >= threshold) {
			s.acks.sent = mark
		}
		s.mu.Unlock()
		switch {
		case mark <= sent:
			continue
		case flush || mark-sent >= threshold:
			w.WriteCommand("EACK", subID, strconv.FormatInt(mark, 10))
			if err := w.Flush(); err != nil {
				return err
			}
		case !armed:
			timer.Reset(ackFlushDelay)
			armed = true
		}
	}
}

func eventFromValue(v resp3.Value) (Event, error) {
	if v.Type != resp3.Map {
		return Event{}, fmt.Errorf("sierradb: event is a %s, not a map", v.Type)
	}
	var ev Event
	var err error
	str := func(f resp3.Value) string { return string(f.Str) }
	for i := 0; i+1 < len(v.Elems); i += 2 {
		k, f := v.Elems[i], v.Elems[i+1]
		var perr error
		switch string(k.Str) {
		case "event_id":
			ev.ID, perr = uuid.ParseBytes(f.Str)
		case "partition_key":
			ev.PartitionKey, perr = uuid.ParseBytes(f.Str)
		case "partition_id":
			ev.PartitionID = uint16(f.Int)
		case "transaction_id":
			ev.TransactionID, perr = uuid.ParseBytes(f.Str)
		case "partition_sequence":
			ev.PartitionSequence = uint64(f.Int)
		case "stream_version":
			ev.StreamVersion = uint64(f.Int)
		case "timestamp":
			ev.Timestamp = time.UnixMilli(f.Int).UTC()
		case "stream_id":
			ev.StreamID = str(f)
		case "event_name":
			ev.Name = str(f)
		case "metadata":
			if len(f.Str) > 0 {
				ev.Metadata = f.Str
			}
		case "payload":
			if len(f.Str) > 0 {
				ev.Payload = f.Str
			}
		}
		if perr != nil && err == nil {
			err = fmt.Errorf("sierradb: event field %s: %w", k.Str, perr)
		}
	}
	return ev, err
}
