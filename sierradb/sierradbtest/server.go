package sierradbtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/esmill/esmill/internal/proc"
)

// Config says how [Start] runs the server. The zero value is a server with
// 32 partitions on a free loopback port with a temporary data directory.
type Config struct {
	// Binary is the sierradb program. Default: what [Binary] finds.
	Binary string
	// Addr is the client address, host:port. Default: a free loopback
	// port, and another one if someone else takes it first. Give an Addr
	// (and a Dir) to start a server again where its clients expect it.
	Addr string
	// Dir is the data directory. Default: a new temporary directory, which
	// Close removes. A Dir given here is kept, so a server started again on
	// it finds its events.
	Dir string
	// Partitions is the number of partitions, 1 to 65535. Default: the
	// server's, 32.
	Partitions int
	// LogFilter is passed as --log, a tracing filter such as "warn" or
	// "sierradb=debug". Default: the server's (info).
	LogFilter string
	// StartTimeout bounds the wait until the server answers. Default: 30 s.
	StartTimeout time.Duration
	// StopTimeout is how long Close waits after SIGTERM before it kills the
	// server. Default: 10 s.
	StopTimeout time.Duration
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Partitions < 0 || c.Partitions > 65535 {
		errs = append(errs, fmt.Errorf("Partitions must be 1 to 65535 (or 0 for the default), got %d", c.Partitions))
	}
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			errs = append(errs, fmt.Errorf("Addr %q is not host:port: %v", c.Addr, err))
		}
	}
	if c.StartTimeout < 0 {
		errs = append(errs, fmt.Errorf("StartTimeout must not be negative, got %s", c.StartTimeout))
	}
	if c.StopTimeout < 0 {
		errs = append(errs, fmt.Errorf("StopTimeout must not be negative, got %s", c.StopTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sierradbtest: invalid Config: %w", err)
	}
	return nil
}

func (c *Config) setDefaults() error {
	if c.Binary == "" {
		bin, err := Binary()
		if err != nil {
			return err
		}
		c.Binary = bin
	} else if _, err := os.Stat(c.Binary); err != nil {
		return fmt.Errorf("%w: Config.Binary %s: %v", ErrNotInstalled, c.Binary, err)
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 30 * time.Second
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = 10 * time.Second
	}
	return nil
}

// configFile is a single node: no cluster, replication factor 1.
func (c Config) configFile() string {
	var b strings.Builder
	b.WriteString("[network]\ncluster_enabled = false\n[replication]\nfactor = 1\n")
	if c.Partitions > 0 {
		// The server needs at least as many partitions as buckets (4).
		fmt.Fprintf(&b, "[partition]\ncount = %d\n[bucket]\ncount = %d\n", c.Partitions, min(c.Partitions, 4))
	}
	return b.String()
}

// Server is a real SierraDB running as a child process.
type Server struct {
	addr    string
	dataDir string
	runDir  string // config and log; removed by Close
	ownData bool   // dataDir is inside runDir
	peerID  string
	proc    *proc.Process
	stop    time.Duration
	killed  bool

	closeOnce sync.Once
	closeErr  error
}

// Start starts a server and waits until it answers. A missing binary gives
// an error wrapping [ErrNotInstalled]; any other failure carries the
// server's output.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("sierradbtest: %w", err)
	}
	runDir, err := os.MkdirTemp("", "sierradbtest-")
	if err != nil {
		return nil, fmt.Errorf("sierradbtest: %w", err)
	}
	s, err := start(ctx, cfg, runDir)
	if err != nil {
		os.RemoveAll(runDir)
		return nil, fmt.Errorf("sierradbtest: starting %s: %w", cfg.Binary, err)
	}
	return s, nil
}

func start(ctx context.Context, cfg Config, runDir string) (*Server, error) {
	conf := filepath.Join(runDir, "sierra.toml")
	if err := os.WriteFile(conf, []byte(cfg.configFile()), 0o644); err != nil {
		return nil, err
	}
	s := &Server{dataDir: cfg.Dir, runDir: runDir, stop: cfg.StopTimeout}
	if s.dataDir == "" {
		s.dataDir, s.ownData = filepath.Join(runDir, "data"), true
	}
	args := []string{"-c", conf, "--dir", s.dataDir, "--cluster-address", "/ip4/127.0.0.1/tcp/0"}
	if cfg.LogFilter != "" {
		// The peer id line is how Start knows the server it reached is
		// this one: keep it whatever the filter.
		args = append(args, "--log", cfg.LogFilter+",libp2p_swarm=info")
	}
	tries := 1
	if cfg.Addr == "" {
		tries = 3
	}
	var lastErr error
	for range tries {
		addr := cfg.Addr
		if addr == "" {
			port, err := proc.FreePort()
			if err != nil {
				return nil, err
			}
			addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		}
		p, err := proc.Start(runDir, cfg.Binary, append(args, "--client-address", addr), []string{"NO_COLOR=1"})
		if err != nil {
			return nil, err
		}
		var peer string
		err = p.WaitReady(ctx, cfg.StartTimeout, func(ctx context.Context) error {
			var err error
			peer, err = checkOwn(ctx, addr, p)
			return err
		})
		if err == nil {
			s.addr, s.peerID, s.proc = addr, peer, p
			return s, nil
		}
		p.Kill()
		lastErr = err
		if !strings.Contains(strings.ToLower(p.Log()), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

// checkOwn asks addr for HELLO and checks that the server there is
// SierraDB with the peer id that p logged: the server this Start started.
func checkOwn(ctx context.Context, addr string, p *proc.Process) (string, error) {
	info, err := proc.Hello(ctx, addr)
	if err != nil {
		return "", err
	}
	if info["server"] != "sierradb" {
		return "", fmt.Errorf("%s is not SierraDB: HELLO says server %q", addr, info["server"])
	}
	peer := info["peer_id"]
	if peer == "" || !strings.Contains(p.Log(), "local_peer_id="+peer) {
		return "", fmt.Errorf("the SierraDB at %s (peer %s) is not the one started here", addr, peer)
	}
	return peer, nil
}

// Addr is the address clients connect to, host:port.
func (s *Server) Addr() string { return s.addr }

// Dir is the data directory.
func (s *Server) Dir() string { return s.dataDir }

// PeerID is the peer id the server reported in HELLO; a new one is made on
// every start.
func (s *Server) PeerID() string { return s.peerID }

// Output returns what the server has written to stdout and stderr so far.
func (s *Server) Output() string { return s.proc.Log() }

// Kill kills the server at once (SIGKILL), as a crash would. Its data
// directory stays until Close.
func (s *Server) Kill() {
	s.killed = true
	s.proc.Kill()
}

// Close stops the server (SIGTERM, then SIGKILL after Config.StopTimeout)
// and removes its temporary files. It reports a server that had to be
// killed or that exited with an error. Calling it again returns the same
// result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		select {
		case <-s.proc.Exited():
			if err := s.proc.ExitErr(); err != nil && !s.killed {
				s.closeErr = fmt.Errorf("sierradbtest: server %s had exited with %v; output:\n%s", s.addr, err, s.proc.LogTail(2000))
			}
		default:
			start := time.Now()
			s.proc.Stop(s.stop)
			switch {
			case time.Since(start) >= s.stop:
				s.closeErr = fmt.Errorf("sierradbtest: server %s did not stop within %s of SIGTERM and was killed; output:\n%s",
					s.addr, s.stop, s.proc.LogTail(2000))
			case proc.GracefulStop && s.proc.ExitErr() != nil:
				s.closeErr = fmt.Errorf("sierradbtest: server %s exited with %v; output:\n%s", s.addr, s.proc.ExitErr(), s.proc.LogTail(2000))
			}
		}
		if err := os.RemoveAll(s.runDir); err != nil && s.closeErr == nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}
