//go:build linux

package sierracluster

import (
	"context"
	"io"
	"net"
	"sync"
	"time"
)

// forwarder listens on a free loopback port of the test's own namespace and
// forwards each connection to a node's client port, dialled from inside the
// node's namespace. Its address stays the same across restarts of the node,
// so a client can reconnect to it. It never puts an interface into the
// root namespace: only its listening socket lives there.
type forwarder struct {
	netns  string
	target string
	ln     net.Listener

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	blocked bool
	closed  bool
	wg      sync.WaitGroup
}

// dialTimeout bounds a forwarder's dial into the namespace.
const dialTimeout = 5 * time.Second

func newForwarder(netns, target string) (*forwarder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &forwarder{netns: netns, target: target, ln: ln, conns: make(map[net.Conn]struct{})}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

func (f *forwarder) addr() string { return f.ln.Addr().String() }

func (f *forwarder) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			f.mu.Lock()
			closed := f.closed
			f.mu.Unlock()
			if closed {
				return
			}
			// A transient failure (such as too many open files): keep
			// serving rather than leave clients hanging in the backlog.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		f.mu.Lock()
		if f.closed || f.blocked {
			f.mu.Unlock()
			c.Close()
			continue
		}
		f.wg.Add(1)
		f.mu.Unlock()
		go f.connect(c)
	}
}

// connect dials the node for client connection c and starts the pipes.
func (f *forwarder) connect(c net.Conn) {
	defer f.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	up, err := dialIn(ctx, f.netns, f.target)
	cancel()
	if err != nil {
		// The node is down: the client sees its connection closed at once.
		c.Close()
		return
	}
	f.mu.Lock()
	if f.closed || f.blocked {
		f.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	f.conns[c] = struct{}{}
	f.conns[up] = struct{}{}
	f.wg.Add(2)
	f.mu.Unlock()
	go f.pipe(c, up)
	go f.pipe(up, c)
}

func (f *forwarder) pipe(dst, src net.Conn) {
	defer f.wg.Done()
	io.Copy(dst, src)
	dst.Close()
	src.Close()
	f.mu.Lock()
	delete(f.conns, dst)
	delete(f.conns, src)
	f.mu.Unlock()
}

// dropAll closes every forwarded connection and returns how many there were.
func (f *forwarder) dropAll() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.conns) / 2
	for c := range f.conns {
		c.Close()
	}
	return n
}

// setBlocked refuses (closes at once) new connections while blocked, and
// drops the open ones when blocking starts.
func (f *forwarder) setBlocked(b bool) {
	f.mu.Lock()
	f.blocked = b
	f.mu.Unlock()
	if b {
		f.dropAll()
	}
}

func (f *forwarder) close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	f.mu.Unlock()
	f.ln.Close()
	f.dropAll()
	f.wg.Wait()
}
