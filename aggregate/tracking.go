package aggregate

import (
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/codec"
)

// tracking is what an entity remembers of the commands behind its events,
// rebuilt from the stream's metadata (and kept in snapshots): causation per
// source stream, recent command ids, and command times for rate limits.
type tracking struct {
	// Causation maps a source stream to the highest version seen and the
	// commands recorded at that version.
	Causation map[string]*causationEntry `cbor:"c"`
	// CommandIDs holds the most recent command ids, oldest first.
	CommandIDs []string `cbor:"i"`
	// History holds, per command name, the times (ms) of recent commands.
	History map[string][]int64 `cbor:"h"`

	ids    map[string]struct{}
	lastTx uuid.UUID
	window int
}

type causationEntry struct {
	Version  uint64   `cbor:"v"`
	Commands []string `cbor:"n"`
}

func newTracking(window int) *tracking {
	return &tracking{
		Causation: make(map[string]*causationEntry),
		History:   make(map[string][]int64),
		ids:       make(map[string]struct{}),
		window:    window,
	}
}

// restore rebuilds the lookup set after decoding.
func (t *tracking) restore(window int) {
	t.window = window
	if t.Causation == nil {
		t.Causation = make(map[string]*causationEntry)
	}
	if t.History == nil {
		t.History = make(map[string][]int64)
	}
	t.ids = make(map[string]struct{}, len(t.CommandIDs))
	for _, id := range t.CommandIDs {
		t.ids[id] = struct{}{}
	}
}

// historyLimit bounds the command times kept per command name.
const historyLimit = 1024

// record notes an applied event's metadata. Events of one command share a
// transaction (and command id), so a command counts once.
func (t *tracking) record(m codec.Metadata, tx uuid.UUID, tsMillis int64) {
	newCommand := tx == uuid.Nil || tx != t.lastTx
	t.lastTx = tx
	if m.Command != "" && m.Causation != nil {
		src := m.Causation.StreamID
		e := t.Causation[src]
		switch {
		case e == nil:
			t.Causation[src] = &causationEntry{Version: m.Causation.StreamVersion, Commands: []string{m.Command}}
		case m.Causation.StreamVersion > e.Version:
			e.Version, e.Commands = m.Causation.StreamVersion, []string{m.Command}
		case m.Causation.StreamVersion == e.Version && !contains(e.Commands, m.Command):
			e.Commands = append(e.Commands, m.Command)
		}
	}
	if m.CommandID != "" {
		if _, seen := t.ids[m.CommandID]; !seen {
			t.ids[m.CommandID] = struct{}{}
			t.CommandIDs = append(t.CommandIDs, m.CommandID)
			if len(t.CommandIDs) > t.window {
				delete(t.ids, t.CommandIDs[0])
				t.CommandIDs = t.CommandIDs[1:]
			}
		}
	}
	if m.Command != "" && newCommand {
		h := append(t.History[m.Command], tsMillis)
		if len(h) > historyLimit {
			h = h[len(h)-historyLimit:]
		}
		t.History[m.Command] = h
	}
}

func (t *tracking) check(m codec.Metadata) CausationCheck {
	if m.Causation == nil {
		return NoCausation
	}
	e := t.Causation[m.Causation.StreamID]
	switch {
	case e == nil:
		return CausationOK
	case m.Causation.StreamVersion < e.Version:
		return OutOfOrder
	case m.Causation.StreamVersion == e.Version && contains(e.Commands, m.Command):
		return AlreadyProcessed
	}
	return CausationOK
}

func (t *tracking) seenCommand(id string) bool {
	_, ok := t.ids[id]
	return ok
}

// countSince counts commands of a name at or after a time.
func (t *tracking) countSince(command string, since time.Time) int {
	h := t.History[command]
	cut := since.UnixMilli()
	n := 0
	for i := len(h) - 1; i >= 0 && h[i] > cut; i-- {
		n++
	}
	return n
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
