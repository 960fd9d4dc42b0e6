package aggregate

import (
	"reflect"
	"runtime/debug"

	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/sierradb"
)

// kind is the untyped view of a *Type that the executor works with.
type kind interface {
	Category() string
	newState() any
	command(cmd Command) (*commandInfo, error)
	applyStored(state any, ev sierradb.Event) (codec.Metadata, error)
	applyNew(state any, ev Event, m EventMeta) error
	encodeStored(ev Event, meta codec.Metadata, metaBytes []byte) (name string, payload, metadata []byte, err error)
	snapshotPolicy() *snapshotPolicy
	encodeState(state any) ([]byte, error)
	decodeState(b []byte) (any, error)
	// rateLimits maps the commands with a rate limit to its Max.
	rateLimits() map[string]int
	// groupCommitted: the type was defined WithGroupCommit.
	groupCommitted() bool
}

// commandInfo is a command's handler bound to the untyped view.
type commandInfo struct {
	name       string
	limit      *RateLimit
	handle     func(state any, ctx *CommandContext) ([]Event, error)
	idempotent func(state any, ctx *CommandContext) bool
}

func (t *Type[S, ID]) newState() any {
	s := t.newStateF()
	return &s
}

func (t *Type[S, ID]) command(cmd Command) (*commandInfo, error) {
	if cmd == nil {
		return nil, &UnknownCommandError{Category: t.category, Command: "<nil>"}
	}
	name, ok := t.cmdTypes[reflect.TypeOf(cmd)]
	if !ok {
		return nil, &UnknownCommandError{Category: t.category, Command: cmd.CommandName()}
	}
	d := t.commands[name]
	info := &commandInfo{
		name:  name,
		limit: d.limit,
		handle: func(state any, ctx *CommandContext) ([]Event, error) {
			return d.handle(*state.(*S), cmd, ctx)
		},
	}
	if d.idempotent != nil {
		info.idempotent = func(state any, ctx *CommandContext) bool { return d.idempotent(*state.(*S), cmd, ctx) }
	}
	return info, nil
}

func (t *Type[S, ID]) applyStored(state any, ev sierradb.Event) (codec.Metadata, error) {
	e, m, err := t.DecodeEvent(ev)
	if err != nil {
		return m, err
	}
	return m, t.applyNew(state, e, EventMeta{StreamID: ev.StreamID, Version: ev.StreamVersion, Metadata: m, Timestamp: ev.Timestamp.UnixMilli()})
}

// applyNew applies an event value: of a registered type, or of an old
// shape's type (a given event of Decide), upcast first.
func (t *Type[S, ID]) applyNew(state any, ev Event, m EventMeta) (err error) {
	if ev, err = t.current(ev); err != nil {
		return err
	}
	name := t.eventTypes[reflect.TypeOf(ev)]
	defer recoverPanic("the applier of event "+name, m.StreamID, &err)
	t.events[name].apply(state.(*S), ev, m)
	return nil
}

func (t *Type[S, ID]) snapshotPolicy() *snapshotPolicy { return t.snapshots }

func (t *Type[S, ID]) rateLimits() map[string]int { return t.limits }

func (t *Type[S, ID]) groupCommitted() bool { return t.groupCommit }

func (t *Type[S, ID]) encodeState(state any) ([]byte, error) {
	return codec.Marshal(codec.CBOR, state.(*S))
}

func (t *Type[S, ID]) decodeState(b []byte) (any, error) {
	s := t.newStateF()
	if err := codec.Unmarshal(codec.CBOR, b, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// recoverPanic turns a panic of the code named by where into a *PanicError
// in *err.
func recoverPanic(where, streamID string, err *error) {
	if v := recover(); v != nil {
		*err = &PanicError{Where: where, StreamID: streamID, Value: v, Stack: debug.Stack()}
	}
}
