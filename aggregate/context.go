package aggregate

import (
	"time"

	"github.com/esmill/esmill/codec"
)

// CommandContext is what a command handler knows besides the state and the
// command.
type CommandContext struct {
	// StreamID is the entity's stream.
	StreamID string
	// Version is the entity's current version, -1 for a new entity.
	Version int64
	// Time is the command's logical time, which becomes the events'
	// timestamp. Default: when Execute was called.
	Time time.Time
	// Metadata is the command's metadata: command name, causation,
	// correlation id, command id and the caller's data.
	Metadata codec.Metadata

	tracking *tracking
	started  time.Time
	clock    func() time.Time
}

// Now returns the logical time plus the real time elapsed since the command
// started, like kameo_es's Context::now.
func (c *CommandContext) Now() time.Time { return c.Time.Add(c.clock().Sub(c.started)) }

// CausationCheck is the outcome of checking a command's causation against
// what the entity has already handled.
type CausationCheck int

const (
	// NoCausation: the command names no causing event.
	NoCausation CausationCheck = iota
	// CausationOK: the causing event is new to this entity.
	CausationOK
	// AlreadyProcessed: this command was already run for that event.
	AlreadyProcessed
	// OutOfOrder: the entity has already handled a later event of the
	// same source stream.
	OutOfOrder
)

func (c CausationCheck) String() string {
	switch c {
	case CausationOK:
		return "ok"
	case AlreadyProcessed:
		return "already processed"
	case OutOfOrder:
		return "out of order"
	}
	return "no causation"
}

// CausationCheck compares the command's causation with the entity's
// causation tracking.
func (c *CommandContext) CausationCheck() CausationCheck {
	return c.tracking.check(c.Metadata)
}
