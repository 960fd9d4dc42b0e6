package readmodel

import "github.com/esmill/esmill/codec"

// Causation names the event as the cause of a command, so that a handler
// that sends or executes a command because of this event can say so in one
// line:
//
//	accounts.Execute(ctx, id, Credit{Amount: e.Amount}, aggregate.CausedBy(m.Causation()))
//
// The target entity then runs the command once per causing event and
// command name, however often the event is delivered or replayed (see
// aggregate.CausedBy). Package reactor sets it on every command by itself.
func (m Meta) Causation() codec.Causation {
	return codec.Causation{EventID: m.EventID, StreamID: m.StreamID, StreamVersion: m.StreamVersion}
}
