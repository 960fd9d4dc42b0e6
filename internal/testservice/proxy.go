package testservice

import (
	"context"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy forwards loopback TCP connections to a target and can cut them all
// at once, or refuse new ones for a while, to test reconnection against
// any server.
type Proxy struct {
	dial func(ctx context.Context) (net.Conn, error)
	ln   net.Listener

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	blocked bool
	closed  bool
	wg      sync.WaitGroup
}

// proxyDialTimeout bounds the dial of one forwarded connection.
const proxyDialTimeout = 5 * time.Second

// NewProxy listens on a free loopback port and forwards to target.
func NewProxy(target string) (*Proxy, error) {
	return NewDialProxy(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", target)
	})
}

// NewDialProxy listens on a free loopback port and forwards each
// connection to one that dial opens (for example from inside a network
// namespace). A client whose upstream cannot be dialled sees its
// connection closed at once.
func NewDialProxy(dial func(ctx context.Context) (net.Conn, error)) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{dial: dial, ln: ln, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return
			}
			// A transient failure (such as too many open files): keep
			// serving rather than leave clients hanging in the backlog.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.mu.Lock()
		if p.closed || p.blocked {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.connect(c)
	}
}

// connect dials the upstream for client connection c and starts the pipes.
func (p *Proxy) connect(c net.Conn) {
	defer p.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), proxyDialTimeout)
	up, err := p.dial(ctx)
	cancel()
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.closed || p.blocked {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c] = struct{}{}
	p.conns[up] = struct{}{}
	p.wg.Add(2)
	p.mu.Unlock()
	go p.pipe(c, up)
	go p.pipe(up, c)
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// DropAll closes every open connection and returns how many there were;
// new ones are still accepted.
func (p *Proxy) DropAll() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns) / 2
	for c := range p.conns {
		c.Close()
	}
	return n
}

// SetBlocked refuses (closes at once) new connections while blocked, and
// drops the open ones when blocking starts.
func (p *Proxy) SetBlocked(b bool) {
	p.mu.Lock()
	p.blocked = b
	p.mu.Unlock()
	if b {
		p.DropAll()
	}
}

// Close stops the proxy and closes every connection. It is idempotent.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.DropAll()
	p.wg.Wait()
}
