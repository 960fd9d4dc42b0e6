package embedded

import (
	"errors"
	"io"
	"net"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// requestLimits bound what one request frame may hold. A frame beyond them
// closes the connection.
var requestLimits = resp3.Limits{
	MaxBlobLen: 256 << 20,
	MaxElems:   1 << 20,
	MaxDepth:   16,
	MaxLineLen: 64 << 10,
}

// handler runs one command. It either writes exactly one reply with
// c.write, or returns an error that the dispatcher sends as the reply.
type handler func(c *conn, a *args) error

var commands map[string]handler

func init() {
	commands = map[string]handler{
		"EACK":     cmdEack,
		"EAPPEND":  cmdEappend,
		"EGET":     cmdEget,
		"EMAPPEND": cmdEmappend,
		"EPSCAN":   cmdEpscan,
		"EPSEQ":    cmdEpseq,
		"EPSUB":    cmdEpsub,
		"ESCAN":    cmdEscan,
		"ESUB":     cmdEsub,
		"ESVER":    cmdEsver,
		"HELLO":    cmdHello,
		"INFO":     cmdInfo,
		"PING":     cmdPing,
	}
}

// conn is one client connection. Requests are read and run one at a time by
// serve; subscription goroutines write pushes concurrently, each whole frame
// under wmu, so a push never lands inside a reply.
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
	r := resp3.NewReaderLimits(c.nc, requestLimits)
	for {
		v, err := r.ReadValue()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.srv.logger.Debug("closing connection", "remote", c.nc.RemoteAddr().String(), "err", err)
			}
			return
		}
		if !c.dispatch(v) {
			return
		}
	}
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
	h, found := commands[cmd]
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
