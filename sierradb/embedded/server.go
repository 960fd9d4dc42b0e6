package embedded

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// Version is the SierraDB version the server reports in HELLO.
const Version = "0.3.1"

// Server is an in-process SierraDB-compatible server. It is safe for
// concurrent use. Create one with [Start], [Run] or [RunT], and stop it with
// [Server.Close].
type Server struct {
	cfg    Config
	logger *slog.Logger
	ln     net.Listener
	store  *store
	peerID string

	frameBudget *resp3.Budget // decoded request memory of all connections
	recovery    []RecoveryAction

	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup // accept loop, connections, subscriptions

	mu       sync.Mutex
	conns    map[*conn]struct{}
	closed   bool
	errText  string
	failNext map[string][]string
	dropNext map[string]int
	// held maps a partition to the highest subscription number whose
	// live delivery of it is held (HoldLive).
	held    map[uint16]uint64
	anyHeld atomic.Bool // len(held) > 0, read without mu by deliveries

	subSeq atomic.Uint64 // numbers subscriptions in order of creation

	subscriptions atomic.Int64 // running subscription goroutines
	cacheHits     atomic.Uint64
	cacheMisses   atomic.Uint64
}

// Start starts a server with cfg: it opens Config.Dir (replaying its logs),
// listens on Config.Addr and serves connections until [Server.Close].
func Start(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	st := newStore(cfg.PartitionCount, cfg.Logger)
	var recovery []RecoveryAction
	if cfg.Dir != "" {
		d, err := openDataDir(cfg.Dir, cfg.PartitionCount, cfg.Logger)
		if err != nil {
			return nil, err
		}
		if recovery, err = st.openDir(d, cfg.CacheBytes, cfg.Salvage); err != nil {
			d.close()
			return nil, err
		}
	}
	capConnections(&cfg)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		st.close()
		return nil, fmt.Errorf("embedded: listen: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		logger:   cfg.Logger,
		ln:       ln,
		store:    st,
		recovery: recovery,
		peerID:   newPeerID(),

		frameBudget: resp3.NewBudget(cfg.MaxTotalFrameBytes),
		closing:     make(chan struct{}),
		conns:       make(map[*conn]struct{}),
		failNext:    make(map[string][]string),
		held:        make(map[uint16]uint64),
		dropNext:    make(map[string]int),
	}
	s.wg.Add(1)
	go s.acceptLoop()
	s.logger.Debug("sierradb-embedded listening", "addr", s.Addr(), "dir", cfg.Dir,
		"partitions", cfg.PartitionCount, "events", st.events.Load())
	return s, nil
}

// capConnections lowers MaxConnections below the process's limit on open
// files, so that a connection beyond it is refused with an error instead of
// waiting in the listen queue while accept fails.
func capConnections(cfg *Config) {
	limit, ok := fileLimit()
	if !ok {
		return
	}
	reserve := uint64(64) // listener, logs, whatever else the process opens
	if cfg.Dir != "" {
		reserve += uint64(cfg.PartitionCount)
	}
	if limit > reserve && uint64(cfg.MaxConnections) <= limit-reserve {
		return
	}
	capped := 1
	if limit > reserve {
		capped = int(limit - reserve)
	}
	cfg.Logger.Warn("MaxConnections lowered to fit the limit on open files (ulimit -n)",
		"configured", cfg.MaxConnections, "effective", capped, "open_files_limit", limit)
	cfg.MaxConnections = capped
}

// Run starts an in-memory server with the default configuration.
func Run() (*Server, error) { return Start(Config{}) }

// Tester is the part of *testing.T (or *testing.B, testing.TB) that [RunT]
// uses.
type Tester interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// RunT starts a server for a test and closes it when the test ends. It takes
// at most one Config; none means the defaults. Any failure ends the test.
func RunT(t Tester, cfg ...Config) *Server {
	t.Helper()
	var c Config
	switch len(cfg) {
	case 0:
	case 1:
		c = cfg[0]
	default:
		t.Fatalf("embedded.RunT: at most one Config, got %d", len(cfg))
		return nil
	}
	s, err := Start(c)
	if err != nil {
		t.Fatalf("embedded.RunT: %v", err)
		return nil
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Fatalf("embedded: close: %v", err)
		}
	})
	return s
}

// Addr returns the address the server listens on, host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// PartitionCount returns the number of partitions.
func (s *Server) PartitionCount() uint16 { return s.cfg.PartitionCount }

// Close stops the server: it closes the listener and every connection, waits
// for every goroutine the server started, and syncs and closes the partition
// logs. It is idempotent; later calls return the first call's result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		_ = s.ln.Close()
		s.mu.Lock()
		s.closed = true
		conns := make([]*conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		for _, c := range conns {
			c.close()
		}
		s.wg.Wait()
		s.closeErr = s.store.close()
	})
	return s.closeErr
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.closing:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient failure such as EMFILE: back off briefly.
			s.logger.Warn("accept failed", "err", err)
			select {
			case <-s.closing:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		if len(s.conns) >= s.cfg.MaxConnections {
			s.mu.Unlock()
			s.refuse(c)
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// refuse tells a connection beyond MaxConnections why it is closed. The
// error is written at once: a fresh connection's send buffer is empty.
func (s *Server) refuse(c *conn) {
	s.logger.Warn("refusing a connection: MaxConnections reached",
		"remote", c.nc.RemoteAddr().String(), "max", s.cfg.MaxConnections)
	c.writeFinal(fmt.Sprintf(msgTooManyConns, s.cfg.MaxConnections))
	c.close()
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Recovery returns what [Start] did to the partition logs of Config.Dir:
// torn tails cut off and, with Config.Salvage, damaged logs cut short, each
// with what was dropped. It is empty when every log was intact.
func (s *Server) Recovery() []RecoveryAction { return append([]RecoveryAction(nil), s.recovery...) }

// ConnectionCount returns the number of open client connections.
func (s *Server) ConnectionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// SubscriptionCount returns the number of running subscriptions over all
// connections. A subscription stops when its connection closes.
func (s *Server) SubscriptionCount() int { return int(s.subscriptions.Load()) }

// DropConnections closes every client connection now. Their subscriptions
// end; clients must reconnect. The server keeps accepting connections.
func (s *Server) DropConnections() {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}

// SetError makes every known command reply with the error msg (for example
// "TRYAGAIN loading") until SetError("") is called. msg is sent as a simple
// error exactly as given. The direct API is not affected.
func (s *Server) SetError(msg string) {
	s.mu.Lock()
	s.errText = msg
	s.mu.Unlock()
}

// FailNext makes the next call of command (any case, e.g. "EAPPEND") reply
// with the error errText instead of running. Calls queue: two FailNext calls
// for one command fail its next two calls. [Server.SetError] takes
// precedence and does not consume a queued failure.
func (s *Server) FailNext(command, errText string) {
	cmd := strings.ToUpper(command)
	s.mu.Lock()
	s.failNext[cmd] = append(s.failNext[cmd], errText)
	s.mu.Unlock()
}

// DropReplyNext makes the next call of command run but not answer: the
// server closes the connection instead of replying, as if the network
// failed right after a write was stored. Clients must treat the outcome as
// unknown. Calls queue like [Server.FailNext].
func (s *Server) DropReplyNext(command string) {
	s.mu.Lock()
	s.dropNext[strings.ToUpper(command)]++
	s.mu.Unlock()
}

// HoldLive makes the subscriptions open now stop delivering partition p's
// events past what each has sent, until [Server.ReleaseLive]: the events
// are stored, readable and counted by EPSEQ, but those subscriptions do
// not send them. A subscription opened later, for example a client's
// resubscription from its position, is not held and sends them. This is
// what SierraDB 0.3.1 can do to a partition's last live event, on a
// replica always and on a coordinator at times (docs/cluster.md); it lets
// a test check that a client does not wait for a next write to get it.
func (s *Server) HoldLive(p uint16) {
	s.mu.Lock()
	s.held[p] = s.subSeq.Load()
	s.anyHeld.Store(true)
	s.mu.Unlock()
}

// ReleaseLive ends [Server.HoldLive] for partition p: the held
// subscriptions send what they held back.
func (s *Server) ReleaseLive(p uint16) {
	s.mu.Lock()
	delete(s.held, p)
	s.anyHeld.Store(len(s.held) > 0)
	s.mu.Unlock()
	s.store.notify()
}

// liveHeld reports whether subscription number n may not deliver
// partition p now.
func (s *Server) liveHeld(p uint16, n uint64) bool {
	if !s.anyHeld.Load() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.held[p]
	return ok && n <= h
}

// takeDropReply reports whether this call's reply is to be dropped.
func (s *Server) takeDropReply(cmd string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropNext[cmd] == 0 {
		return false
	}
	s.dropNext[cmd]--
	return true
}

// injectedError returns the error a command must reply with instead of
// running, if any.
func (s *Server) injectedError(cmd string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.errText != "" {
		return s.errText, true
	}
	if q := s.failNext[cmd]; len(q) > 0 {
		s.failNext[cmd] = q[1:]
		if len(q) == 1 {
			delete(s.failNext, cmd)
		}
		return q[0], true
	}
	return "", false
}

func (s *Server) now() time.Time { return s.cfg.Now() }

// newPeerID returns a random string shaped like a libp2p Ed25519 peer id in
// base58 ("12D3KooW" and 44 more characters), as SierraDB's HELLO reports.
func newPeerID() string {
	const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
	var b [44]byte
	_, _ = rand.Read(b[:])
	out := []byte("12D3KooW")
	for _, c := range b {
		out = append(out, alphabet[int(c)%len(alphabet)])
	}
	return string(out)
}
