package scaleout

import (
	"errors"

	"github.com/esmill/esmill/aggregate"
)

// Counter is the state of an entity of the scale-out runs: the last
// sequence number applied and how many were.
type Counter struct {
	Last    int
	Applied int
}

// Stepped records one applied command.
type Stepped struct {
	Seq int `cbor:"seq"`
}

// EventName implements aggregate.Event.
func (Stepped) EventName() string { return "Stepped" }

// Step is the command: apply sequence number Seq. A Strict step is
// rejected unless Seq follows the last applied one.
type Step struct {
	Seq    int
	Strict bool
}

// CommandName implements aggregate.Command.
func (Step) CommandName() string { return "Step" }

// ErrNotNext rejects a strict step that does not follow the last one.
var ErrNotNext = errors.New("step is not the next one")

// Counters is the entity type of the runs (category "step").
var Counters = aggregate.MustDefine[Counter, string]("step",
	aggregate.On(func(c *Counter, e Stepped) { c.Last, c.Applied = e.Seq, c.Applied+1 }),
	aggregate.Handle(func(c Counter, s Step, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		if s.Strict && s.Seq != c.Last+1 {
			return nil, ErrNotNext
		}
		return aggregate.Events(Stepped{Seq: s.Seq}), nil
	}),
)
