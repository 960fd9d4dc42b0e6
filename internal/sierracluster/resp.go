//go:build linux

package sierracluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Conn is a small RESP3 connection to one node, for probes and for tests
// that need to see exactly what a node answers (error codes, pushes). It is
// not safe for concurrent use. esmill's own client talks to the same
// addresses; this one exists so that the harness depends on no library
// package.
type Conn struct {
	nc     net.Conn
	r      *bufio.Reader
	w      *bufio.Writer
	pushes []Push
}

// Push is a RESP3 push frame, such as a subscription's "subscribe" or
// "message".
type Push []any

// Error is an error reply: Code is its first word when that word is all
// upper case (WRONGVER, CLUSTERDOWN, ...), and empty otherwise.
type Error struct {
	Code string
	Msg  string
}

func (e *Error) Error() string {
	if e.Code == "" {
		return e.Msg
	}
	return e.Code + " " + e.Msg
}

// ErrProtocol reports a frame this reader does not understand.
var ErrProtocol = errors.New("sierracluster: RESP3 protocol error")

// defaultIOTimeout bounds a call whose context has no deadline.
const defaultIOTimeout = 15 * time.Second

// Dial connects to addr (a node's Addr).
func Dial(ctx context.Context, addr string) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &Conn{nc: nc, r: bufio.NewReader(nc), w: bufio.NewWriter(nc)}, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

func (c *Conn) deadline(ctx context.Context) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(defaultIOTimeout)
	}
	c.nc.SetDeadline(dl)
}

// Next returns the next push frame, waiting until ctx ends (without a
// deadline in ctx, for as long as the connection lasts). Replies that
// arrive meanwhile (such as EACK's OK) are dropped.
func (c *Conn) Next(ctx context.Context) (Push, error) {
	if len(c.pushes) > 0 {
		p := c.pushes[0]
		c.pushes = c.pushes[1:]
		return p, nil
	}
	dl, _ := ctx.Deadline()
	c.nc.SetReadDeadline(dl)
	for {
		v, err := c.read()
		if err != nil {
			return nil, err
		}
		if p, ok := v.(Push); ok {
			return p, nil
		}
	}
}

// Send writes one command without reading its reply.
func (c *Conn) Send(ctx context.Context, args ...string) error {
	c.deadline(ctx)
	fmt.Fprintf(c.w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(c.w, "$%d\r\n%s\r\n", len(a), a)
	}
	return c.w.Flush()
}

// Do sends a command and returns its reply. Push frames that arrive before
// the reply are kept for Next. An error reply is returned as *Error.
func (c *Conn) Do(ctx context.Context, args ...string) (any, error) {
	if err := c.Send(ctx, args...); err != nil {
		return nil, err
	}
	return c.Reply(ctx)
}

// Reply reads the next reply that is not a push.
func (c *Conn) Reply(ctx context.Context) (any, error) {
	c.deadline(ctx)
	for {
		v, err := c.read()
		if err != nil {
			return nil, err
		}
		if p, ok := v.(Push); ok {
			c.pushes = append(c.pushes, p)
			continue
		}
		if e, ok := v.(*Error); ok {
			return nil, e
		}
		return v, nil
	}
}

func (c *Conn) line() (string, error) {
	s, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if !strings.HasSuffix(s, "\r\n") {
		return "", fmt.Errorf("%w: line without CRLF", ErrProtocol)
	}
	return s[:len(s)-2], nil
}

func (c *Conn) read() (any, error) {
	l, err := c.line()
	if err != nil {
		return nil, err
	}
	if l == "" {
		return nil, fmt.Errorf("%w: empty line", ErrProtocol)
	}
	body := l[1:]
	switch l[0] {
	case '+':
		return body, nil
	case '-':
		code, msg, _ := strings.Cut(body, " ")
		if !isCode(code) {
			return &Error{Msg: body}, nil
		}
		return &Error{Code: code, Msg: msg}, nil
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '_':
		return nil, nil
	case '#':
		return body == "t", nil
	case ',':
		return strconv.ParseFloat(body, 64)
	case '(':
		return body, nil
	case '$', '=', '!':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return nil, fmt.Errorf("%w: bad length %q", ErrProtocol, body)
		}
		if n == -1 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return nil, err
		}
		s := string(buf[:n])
		if l[0] == '!' {
			return &Error{Msg: s}, nil
		}
		return s, nil
	case '*', '~', '>':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return nil, fmt.Errorf("%w: bad length %q", ErrProtocol, body)
		}
		if n == -1 {
			return nil, nil
		}
		items := make([]any, n)
		for i := range items {
			if items[i], err = c.read(); err != nil {
				return nil, err
			}
		}
		if l[0] == '>' {
			return Push(items), nil
		}
		return items, nil
	case '%':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: bad length %q", ErrProtocol, body)
		}
		m := make(map[string]any, n)
		for range n {
			k, err := c.read()
			if err != nil {
				return nil, err
			}
			v, err := c.read()
			if err != nil {
				return nil, err
			}
			m[fmt.Sprint(k)] = v
		}
		return m, nil
	}
	return nil, fmt.Errorf("%w: unknown frame type %q", ErrProtocol, l[0])
}

// isCode reports whether s looks like an error code: upper-case letters only.
func isCode(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}
