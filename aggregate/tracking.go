package aggregate

import (
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/codec"
)

// tracking is what an entity remembers of the commands behind its events,
// rebuilt from the stream's metadata (and kept in snapshots): causation per
// source stream, the command ids of a retention period, and the times of
// the commands that have a rate limit.
type tracking struct {
	// Causation maps a source stream to the highest version seen and the
	// commands recorded at that version (nil until one is).
	Causation map[string]*causationEntry `cbor:"c"`
	// CommandIDs is the form of snapshots written before command ids
	// were kept as keys; read only, no longer written.
	CommandIDs []string `cbor:"i,omitempty"`
	// IDKeys holds the 16-byte keys of snapshots written before prints;
	// read only, no longer written. IDPrints and IDMarks hold the command ids
	// (see commandIDs.encode).
	IDKeys   []byte `cbor:"k,omitempty"`
	IDPrints []byte `cbor:"p,omitempty"`
	IDMarks  []byte `cbor:"m,omitempty"`
	// History holds, per command name with a rate limit, the times (ms)
	// of its recent commands: as many as the limit's Max (nil until
	// one is).
	History map[string][]int64 `cbor:"h"`

	ids    commandIDs
	policy idPolicy
	// limits maps the commands with a rate limit to its Max (the
	// entity type's map, shared).
	limits map[string]int
	lastTx uuid.UUID
}

type causationEntry struct {
	Version  uint64   `cbor:"v"`
	Commands []string `cbor:"n"`
}

func newTracking(p idPolicy, limits map[string]int) *tracking {
	return &tracking{policy: p, limits: limits}
}

// restore rebuilds the memory after decoding a snapshot taken at
// snapshotMillis; now is the time in ms.
func (t *tracking) restore(p idPolicy, limits map[string]int, snapshotMillis, now int64) {
	t.policy, t.limits = p, limits
	if len(t.Causation) == 0 {
		t.Causation = nil
	}
	// Times of commands without a limit (older snapshots kept them all)
	// are dropped; the others are cut to the limit.
	for name, h := range t.History {
		max, ok := limits[name]
		switch {
		case !ok:
			delete(t.History, name)
		case len(h) > max:
			t.History[name] = append([]int64(nil), h[len(h)-max:]...)
		}
	}
	if len(t.History) == 0 {
		t.History = nil
	}
	if !t.ids.decode(t.IDKeys, t.IDPrints, t.IDMarks) {
		t.ids = commandIDs{}
	}
	// Ids of an older snapshot have no times: they count from the
	// snapshot's.
	for _, id := range t.CommandIDs {
		t.ids.add(keyOf(id), snapshotMillis, now, p)
	}
	t.ids.expire(now, p)
	t.CommandIDs, t.IDKeys, t.IDPrints, t.IDMarks = nil, nil, nil, nil
}

// prepareSnapshot fills the encoded fields of the command ids.
func (t *tracking) prepareSnapshot() {
	t.IDPrints, t.IDMarks = t.ids.encode()
}

// clearSnapshot drops what prepareSnapshot filled.
func (t *tracking) clearSnapshot() { t.IDPrints, t.IDMarks = nil, nil }

// record notes an applied event's metadata. Events of one command share a
// transaction (and command id), so a command counts once. tsMillis is the
// event's time, now the clock's, both in ms.
func (t *tracking) record(m codec.Metadata, tx uuid.UUID, tsMillis, now int64) {
	newCommand := tx == uuid.Nil || tx != t.lastTx
	t.lastTx = tx
	if m.Command != "" && m.Causation != nil {
		src := m.Causation.StreamID
		e := t.Causation[src]
		switch {
		case e == nil:
			if t.Causation == nil {
				t.Causation = make(map[string]*causationEntry)
			}
			t.Causation[src] = &causationEntry{Version: m.Causation.StreamVersion, Commands: []string{m.Command}}
		case m.Causation.StreamVersion > e.Version:
			e.Version, e.Commands = m.Causation.StreamVersion, []string{m.Command}
		case m.Causation.StreamVersion == e.Version && !contains(e.Commands, m.Command):
			e.Commands = append(e.Commands, m.Command)
		}
	}
	if m.CommandID != "" {
		// Events of one command carry one id: the newest key matches
		// at once.
		if k := keyOf(m.CommandID); !t.ids.seen(k) {
			t.ids.add(k, tsMillis, now, t.policy)
		}
	}
	if max, limited := t.limits[m.Command]; limited && newCommand {
		// A rate limit of Max commands per window needs the times of
		// the newest Max commands only.
		if t.History == nil {
			t.History = make(map[string][]int64)
		}
		h := append(t.History[m.Command], tsMillis)
		if len(h) > max {
			h = append(h[:0], h[len(h)-max:]...)
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

func (t *tracking) seenCommand(id string) bool { return t.ids.seen(keyOf(id)) }

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
