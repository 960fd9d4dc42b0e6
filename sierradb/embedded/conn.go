package embedded

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// Fixed bounds on the shape of a request frame; its memory is bounded by
// Config.MaxFrameBytes and Config.MaxTotalFrameBytes (tested:
// TestMaxFrameBytes, TestHostileClients). A frame beyond them
// closes the connection.
const (
	maxRequestBlob  = 256 << 20
	maxRequestElems = 1 << 20
	maxRequestDepth = 16
	maxRequestLine  = 64 << 10
)

// handler runs one command. It either writes exactly one reply with
// c.write, or returns an error that the dispatcher sends as the reply.
type handler func(c *conn, a *args) error

// lookupCommand returns the handler of an upper-case command name.
func lookupCommand(name string) (handler, bool) {
	switch name {
	case "EACK":
		return cmdEack, true
	case "EAPPEND":
		return cmdEappend, true
	case "EGET":
		return cmdEget, true
	case "EMAPPEND":
		return cmdEmappend, true
	case "EPSCAN":
		return cmdEpscan, true
	case "EPSEQ":
		return cmdEpseq, true
	case "EPSUB":
		return cmdEpsub, true
	case "ESCAN":
		return cmdEscan, true
	case "ESUB":
		return cmdEsub, true
	case "ESVER":
		return cmdEsver, true
	case "HELLO":
		return cmdHello, true
	case "INFO":
		return cmdInfo, true
	case "PING":
		return cmdPing, true
	}
	return nil, false
}

// conn is one client connection. Requests are read and run one at a time by
// serve; subscription goroutines write pushes concurrently, each whole frame
// under wmu, so a push never lands inside a reply (tested: TestEmbedded,
// whose subscription case runs commands on a subscribed connection).
type conn struct {
	srv *Server
	nc  net.Conn

	wmu    sync.Mutex
	w      *resp3.Writer
	broken bool

	done      chan struct{} // closed when the connection closes
	closeOnce sync.Once

	subsMu sync.Mutex
	subs   map[uuid.UUID]*subscription
}

func newConn(s *Server, nc net.Conn) *conn {
	return &conn{
		srv:  s,
		nc:   nc,
		w:    resp3.NewWriter(nc),
		done: make(chan struct{}),
		subs: make(map[uuid.UUID]*subscription),
	}
}

// close closes the connection; serve and the subscriptions then end.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		close(c.done)
		c.nc.Close()
	})
}

func (c *conn) serve() {
	defer c.srv.wg.Done()
	defer c.srv.removeConn(c)
	defer c.close()
	s := c.srv
	r := resp3.NewReaderLimits(c.nc, resp3.Limits{
		MaxBlobLen:    maxRequestBlob,
		MaxElems:      maxRequestElems,
		MaxDepth:      maxRequestDepth,
		MaxLineLen:    maxRequestLine,
		MaxFrameBytes: s.cfg.MaxFrameBytes,
		Shared:        s.frameBudget,
	})
	defer r.Release()
	for {
		// An idle connection waits without a deadline (or IdleTimeout); a
		// request, once begun, must arrive whole within FrameTimeout.
		if s.cfg.IdleTimeout > 0 {
			_ = c.nc.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		}
		err := r.WaitFrame()
		if err != nil && s.cfg.IdleTimeout > 0 && r.Buffered() == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			s.logger.Debug("closing an idle connection", "remote", c.nc.RemoteAddr().String(), "idle", s.cfg.IdleTimeout)
			return
		}
		if err == nil {
			_ = c.nc.SetReadDeadline(time.Now().Add(s.cfg.FrameTimeout))
			var v resp3.Value
			v, err = r.ReadValue()
			_ = c.nc.SetReadDeadline(time.Time{})
			if err == nil {
				if !c.dispatch(v) {
					return
				}
				continue
			}
		}
		c.readFailed(err)
		return
	}
}

// readFailed logs why a request could not be read and, where the client can
// act on it, tells it before the connection closes.
func (c *conn) readFailed(err error) {
	s := c.srv
	remote := c.nc.RemoteAddr().String()
	var be *resp3.BudgetError
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.logger.Warn("closing a connection whose request did not arrive within FrameTimeout",
			"remote", remote, "timeout", s.cfg.FrameTimeout)
	case errors.As(err, &be):
		text := fmt.Sprintf(msgFrameTooLarge, be.Limit)
		if be.Shared {
			text = fmt.Sprintf(msgFrameBudgetBusy, be.Limit)
		}
		s.logger.Warn("closing a connection whose request exceeds its memory budget", "remote", remote, "err", err)
		c.writeFinal(text)
	default:
		s.logger.Debug("closing connection", "remote", remote, "err", err)
	}
}

// writeFinal sends a last error reply, giving up after a second if the
// client does not read.
func (c *conn) writeFinal(text string) {
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	c.writeError(text)
}

// dispatch runs one request. It returns false when the connection must
// close.
func (c *conn) dispatch(v resp3.Value) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			c.srv.logger.Error("command panicked; closing the connection", "panic", p, "stack", string(debug.Stack()))
			ok = false
		}
	}()
	if v.Type != resp3.Array {
		return c.writeError(msgExpectedArray)
	}
	if len(v.Elems) == 0 {
		return c.writeError(msgEmptyCommand)
	}
	name := v.Elems[0]
	if !name.IsString() && name.Type != resp3.BigNumber {
		return c.writeError(msgInvalidCommandType)
	}
	cmd := strings.ToUpper(string(name.Str))
	h, found := lookupCommand(cmd)
	if !found {
		return c.writeError(errorf(msgUnknownCommand, cmd).Error())
	}
	if text, inject := c.srv.injectedError(cmd); inject {
		return c.writeError(text)
	}
	if c.srv.takeDropReply(cmd) {
		// Run the command, but let no reply out.
		c.wmu.Lock()
		c.broken = true
		c.wmu.Unlock()
		h(c, &args{v: v.Elems[1:]})
		return false
	}
	if err := h(c, &args{v: v.Elems[1:]}); err != nil {
		return c.writeError(wireText(err))
	}
	return true
}

// write writes one or more whole frames and flushes them. It returns false
// if the connection is broken.
func (c *conn) write(fn func(w *resp3.Writer)) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.broken {
		return false
	}
	fn(c.w)
	if err := c.w.Flush(); err != nil {
		c.broken = true
		c.close()
		return false
	}
	return true
}

func (c *conn) writeError(text string) bool {
	return c.write(func(w *resp3.Writer) { w.WriteError(text) })
}
