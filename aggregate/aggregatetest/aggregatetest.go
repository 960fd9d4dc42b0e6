package aggregatetest

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/codec"
)

// T is the part of *testing.T the scenarios use.
type T interface {
	Helper()
	Fatalf(format string, args ...any)
}

// Decider is what a scenario runs: every *aggregate.Type is one.
type Decider interface {
	Decide(given []aggregate.GivenEvent, cmd aggregate.Command, opts ...aggregate.ExecOption) (aggregate.Decision, error)
}

// Scenario is a given/when/then test of one entity.
type Scenario struct {
	t     T
	typ   Decider
	given []aggregate.GivenEvent
}

// For starts a scenario for an entity type.
func For(t T, typ Decider) *Scenario { return &Scenario{t: t, typ: typ} }

// Given adds past events, as if produced by commands without metadata.
func (s *Scenario) Given(evs ...aggregate.Event) *Scenario {
	for _, e := range evs {
		s.given = append(s.given, aggregate.GivenEvent{Event: e})
	}
	return s
}

// GivenCaused adds a past event produced by command `command` caused by
// cause, so that causation idempotency can be tested.
func (s *Scenario) GivenCaused(command string, cause codec.Causation, evs ...aggregate.Event) *Scenario {
	for _, e := range evs {
		c := cause
		s.given = append(s.given, aggregate.GivenEvent{Event: e, Metadata: codec.Metadata{Command: command, Causation: &c}})
	}
	return s
}

// When runs a command against the state the given events build.
func (s *Scenario) When(cmd aggregate.Command, opts ...aggregate.ExecOption) *Outcome {
	s.t.Helper()
	d, err := s.typ.Decide(s.given, cmd, opts...)
	return &Outcome{s: s, cmd: cmd, d: d, err: err}
}

// Outcome is a command's outcome, to assert on.
type Outcome struct {
	s   *Scenario
	cmd aggregate.Command
	d   aggregate.Decision
	err error
}

func (o *Outcome) mustRun() {
	o.s.t.Helper()
	if o.d.Idempotent {
		o.s.t.Fatalf("%s was idempotent: the command did not run", o.cmd.CommandName())
	}
}

// Then asserts that the command succeeded with exactly these events, and
// returns a scenario with them added to the given events.
func (o *Outcome) Then(want ...aggregate.Event) *Scenario {
	o.s.t.Helper()
	o.mustRun()
	if o.err != nil {
		o.s.t.Fatalf("%s failed: %v", o.cmd.CommandName(), o.err)
	}
	if len(want) == 0 {
		want = nil
	}
	got := o.d.Events
	if len(got) == 0 {
		got = nil
	}
	if !reflect.DeepEqual(got, want) {
		o.s.t.Fatalf("%s produced\n\t%s\nwant\n\t%s", o.cmd.CommandName(), show(got), show(want))
	}
	return o.next()
}

// ThenEvents hands the events to a custom check, and returns a scenario
// with them added.
func (o *Outcome) ThenEvents(check func(evs []aggregate.Event)) *Scenario {
	o.s.t.Helper()
	o.mustRun()
	if o.err != nil {
		o.s.t.Fatalf("%s failed: %v", o.cmd.CommandName(), o.err)
	}
	check(o.d.Events)
	return o.next()
}

// ThenError asserts that the command failed with an error matching target
// (errors.Is), and returns the unchanged scenario.
func (o *Outcome) ThenError(target error) *Scenario {
	o.s.t.Helper()
	o.mustRun()
	if o.err == nil {
		o.s.t.Fatalf("%s succeeded with %s, want error %v", o.cmd.CommandName(), show(o.d.Events), target)
	}
	if !errors.Is(o.err, target) {
		o.s.t.Fatalf("%s failed with %v, want %v", o.cmd.CommandName(), o.err, target)
	}
	return o.s
}

// ThenIdempotent asserts that the command did not run, and returns the
// unchanged scenario.
func (o *Outcome) ThenIdempotent() *Scenario {
	o.s.t.Helper()
	if o.err != nil {
		o.s.t.Fatalf("%s failed: %v", o.cmd.CommandName(), o.err)
	}
	if !o.d.Idempotent {
		o.s.t.Fatalf("%s ran and produced %s, want an idempotent outcome", o.cmd.CommandName(), show(o.d.Events))
	}
	return o.s
}

func (o *Outcome) next() *Scenario {
	n := &Scenario{t: o.s.t, typ: o.s.typ, given: append([]aggregate.GivenEvent(nil), o.s.given...)}
	for _, e := range o.d.Events {
		n.given = append(n.given, aggregate.GivenEvent{Event: e})
	}
	return n
}

func show(evs []aggregate.Event) string {
	if len(evs) == 0 {
		return "no events"
	}
	s := ""
	for i, e := range evs {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s%+v", e.EventName(), e)
	}
	return s
}
