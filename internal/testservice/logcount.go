package testservice

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
)

// LogCounter is a slog.Handler that counts the records whose message
// contains Match (for example the client's "subscription connection lost"
// warnings, one per cut), calls OnFirst (if set) at the first of them, and
// drops every record.
type LogCounter struct {
	Match   string
	OnFirst func()
	n       atomic.Int64
	once    sync.Once
}

// Count returns how many matching records were handled.
func (h *LogCounter) Count() int64 { return h.n.Load() }

func (h *LogCounter) Enabled(context.Context, slog.Level) bool { return true }

func (h *LogCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.Match) {
		h.n.Add(1)
		if h.OnFirst != nil {
			h.once.Do(h.OnFirst)
		}
	}
	return nil
}

func (h *LogCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *LogCounter) WithGroup(string) slog.Handler      { return h }
