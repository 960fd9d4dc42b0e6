package embedded

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// fuzzCommands are the command names a fuzz input's first byte picks from
// (anything past them is sent as an unknown command).
var fuzzCommands = []string{"EAPPEND", "EMAPPEND", "EGET", "ESCAN", "ESVER", "EPSCAN", "EPSEQ",
	"ESUB", "EPSUB", "EACK", "PING", "HELLO", "INFO", "eappend", "NOPE"}

// decodeFuzzRequest turns fuzz bytes into a request: the first byte picks
// the command, the rest are arguments separated by '\n'. An argument
// ":<digits>" is an integer frame, "(<digits>" a big number, "_" a null,
// "*" an empty array, "=<text>" a verbatim string of format txt and
// "+<text>" a simple string; anything else is a blob string.
func decodeFuzzRequest(data []byte) resp3.Value {
	req := resp3.Value{Type: resp3.Array}
	if len(data) == 0 {
		return req
	}
	req.Elems = append(req.Elems, resp3.Value{Type: resp3.BlobString, Str: []byte(fuzzCommands[int(data[0])%len(fuzzCommands)])})
	if len(data) == 1 {
		return req
	}
	for _, a := range bytes.Split(data[1:], []byte("\n")) {
		v := resp3.Value{Type: resp3.BlobString, Str: a}
		switch {
		case len(a) > 1 && a[0] == ':':
			if n, err := strconv.ParseInt(string(a[1:]), 10, 64); err == nil {
				v = resp3.Value{Type: resp3.Integer, Int: n}
			}
		case len(a) > 1 && a[0] == '(':
			v = resp3.Value{Type: resp3.BigNumber, Str: a[1:]}
		case string(a) == "_":
			v = resp3.Value{Type: resp3.Null}
		case string(a) == "*":
			v = resp3.Value{Type: resp3.Array}
		case len(a) > 0 && a[0] == '=':
			v = resp3.Value{Type: resp3.Verbatim, Format: "txt", Str: a[1:]}
		case len(a) > 0 && a[0] == '+':
			v = resp3.Value{Type: resp3.SimpleString, Str: a[1:]}
		}
		req.Elems = append(req.Elems, v)
	}
	return req
}

// panicWatch fails on any log record at Error level: dispatch logs a
// recovered panic there.
type panicWatch struct {
	mu  sync.Mutex
	msg []string
}

func (p *panicWatch) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (p *panicWatch) Handle(_ context.Context, r slog.Record) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
	p.msg = append(p.msg, msg)
	return nil
}
func (p *panicWatch) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p *panicWatch) WithGroup(string) slog.Handler      { return p }

// errorCodes are the first words an error reply may start with.
var errorCodes = []string{"INVALIDARG ", "WRONGVER ", "DBOPFAILED ", "NOTFOUND ", "CLUSTERDOWN ", "TRYAGAIN ",
	"the event id must embed the partition hash", "unsupported version ", "failed to acknowledge events",
	"expected array command", "empty command"}

// FuzzCommand runs arbitrary requests (two per input, on one connection,
// against a fresh in-memory server with 4 partitions) through the command
// parser and handlers. No request may panic; each gets exactly one reply
// frame, well formed, and an error reply starts with a SierraDB error code;
// the store's indexes stay consistent.
func FuzzCommand(f *testing.F) {
	seeds := []string{
		"\x00s\nEv\nEXPECTED_VERSION\nempty\nPAYLOAD\np",
		"\x00s\nEv\nEXPECTED_VERSION\nany\nEXPECTED_VERSION\nempty\nPAYLOAD\n\nPAYLOAD\nx",
		"\x00s\nEv\nEVENT_ID\n00000000-0000-0000-0000-000000000000\nEXPECTED_VERSION\nempty",
		"\x00s\nEv\nPARTITION_KEY\n6ba7b810-9dad-11d1-80b4-00c04fd430c8\nEXPECTED_VERSION\n:0\nTIMESTAMP\n+5",
		"\x016ba7b810-9dad-11d1-80b4-00c04fd430c8\ns\nEv\nEXPECTED_VERSION\nempty\nt\nEv\nEXPECTED_VERSION\nnope",
		"\x016ba7b810-9dad-11d1-80b4-00c04fd430c8\ns\nEv\nEXPECTED_VERSION\nempty\ns\nEv\nEXPECTED_VERSION\n0",
		"\x026ba7b810-9dad-11d1-80b4-00c04fd430c8", "\x03s\n-\n+\nCOUNT\n:5\nPARTITION_KEY\nx", "\x04s\nPARTITION_KEY",
		"\x050\n-\n+\nCOUNT\n(3", "\x06*", "\x07s\nt\nFROM\nMAP\ns=0\nWINDOW\n2", "\x08*\nFROM\nMAP\n1=2\nDEFAULT\n0\nWINDOW\n:1",
		"\x096ba7b810-9dad-11d1-80b4-00c04fd430c8\n:3", "\x0a", "\x0b3", "\x0cCACHE", "\x0dS\n=Ev\n+EXPECTED_VERSION\n_",
		"\x0e", "\x00\n\n\n", "\x00s\nEv\n*\n_",
	}
	for _, s := range seeds {
		f.Add([]byte(s), []byte("\x00s\nEv\nEXPECTED_VERSION\n:0"))
	}
	f.Fuzz(func(t *testing.T, first, second []byte) {
		watch := &panicWatch{}
		cfg := Config{PartitionCount: 4, Logger: slog.New(watch)}
		cfg.setDefaults()
		srv := &Server{cfg: cfg, logger: cfg.Logger, store: newStore(4, cfg.Logger), peerID: newPeerID(),
			closing: make(chan struct{}), conns: map[*conn]struct{}{}, failNext: map[string][]string{},
			dropNext: map[string]int{}, frameBudget: resp3.NewBudget(cfg.MaxTotalFrameBytes)}
		client, server := net.Pipe()
		c := newConn(srv, server)
		replies := make(chan resp3.Value, 16)
		readErr := make(chan error, 1)
		go func() {
			r := resp3.NewReader(client)
			for {
				v, err := r.ReadValue()
				if err != nil {
					readErr <- err
					close(replies)
					return
				}
				if v.Type != resp3.Push {
					replies <- v
				}
			}
		}()
		for _, data := range [][]byte{first, second} {
			req := decodeFuzzRequest(data)
			if !c.dispatch(req) {
				break
			}
			select {
			case v := <-replies:
				if v.Type == resp3.SimpleError && !hasAnyPrefix(string(v.Str), errorCodes) {
					t.Fatalf("%s: error without a SierraDB code: %q", req, v.Str)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: no reply", req)
			}
		}
		c.close()
		close(srv.closing)
		srv.wg.Wait() // subscriptions
		client.Close()
		if err := <-readErr; err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("reply stream: %v", err)
		}
		for v := range replies {
			t.Fatalf("an extra reply: %s", v)
		}
		if len(watch.msg) > 0 {
			t.Fatalf("logged at Error: %s", strings.Join(watch.msg, "; "))
		}
		checkStore(t, srv.store)
	})
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// checkStore verifies the indexes of a memory-mode store against its events.
func checkStore(t *testing.T, st *store) {
	t.Helper()
	for _, p := range st.parts {
		if uint64(len(p.events)) != p.size.Load() {
			t.Fatalf("partition %d: %d events, size %d", p.id, len(p.events), p.size.Load())
		}
		for i, e := range p.events {
			if e.seq != uint64(i) || e.pid != p.id {
				t.Fatalf("partition %d: event %d has sequence %d, partition %d", p.id, i, e.seq, e.pid)
			}
			if got, _ := st.eventByID(e.id); got == nil {
				t.Fatalf("event %s not found by id", e.id)
			}
		}
	}
	for id, s := range st.streams {
		p := st.parts[s.pid]
		for v, seq := range s.seqs {
			e := p.events[seq]
			if e.streamID != id || e.version != uint64(v) || e.key != s.key {
				t.Fatalf("stream %q version %d: event %s v%d under %s", id, v, e.streamID, e.version, e.key)
			}
		}
	}
}
