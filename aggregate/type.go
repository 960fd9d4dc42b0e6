package aggregate

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/sierradb"
)

// Event is implemented by every event type. EventName is its stable stored
// name (SierraDB's event name and the payload's variant name); it must not
// depend on the receiver's field values.
type Event interface {
	EventName() string
}

// Command is implemented by every command type. CommandName is its stable
// name, stored with every event it produces (kameo_es's ccmd) and used by
// causation tracking, so renaming it changes its identity in stored data.
type Command interface {
	CommandName() string
}

// Events is a convenience for handlers: Events(a, b) is []Event{a, b}.
func Events(evs ...Event) []Event { return evs }

// Type is an entity type: category, state type S, id type ID, its events
// and its commands. Build one with [Define]; it is immutable afterwards and
// safe for concurrent use.
type Type[S any, ID comparable] struct {
	category   string
	newStateF  func() S
	format     codec.Format
	events     map[string]*eventDef[S]
	eventTypes map[reflect.Type]string
	commands   map[string]*commandDef[S]
	cmdTypes   map[reflect.Type]string
	keyFunc    func(ID) uuid.UUID
	snapshots  *snapshotPolicy
	formatID   func(ID) string
	parseID    func(string) (ID, error)
	history    history
	// limits maps the names of the commands with a rate limit to the
	// limit's Max: the only commands whose times an entity keeps.
	limits map[string]int
	// groupCommit: WithGroupCommit.
	groupCommit bool
}

type eventDef[S any] struct {
	name    string
	version int // schema version, 1 without an EventVersion method
	typ     reflect.Type
	// decode reads a payload whose variant name is wrapped (the event's
	// name, or an old name it was stored under).
	decode func(f codec.Format, payload []byte, wrapped string) (Event, error)
	apply  func(s *S, ev Event, m EventMeta)
}

type commandDef[S any] struct {
	name       string
	typ        reflect.Type
	decode     func(f codec.Format, payload []byte) (Command, error)
	handle     func(s S, cmd Command, ctx *CommandContext) ([]Event, error)
	idempotent func(s S, cmd Command, ctx *CommandContext) bool
	limit      *RateLimit
}

// Option configures a [Type].
type Option[S any] interface {
	apply(*typeBuilder[S]) error
}

type typeBuilder[S any] struct {
	newState  func() S
	format    codec.Format
	events    []*eventDef[S]
	commands  []*commandDef[S]
	keyFunc   any
	snapshots *snapshotPolicy
	upcasts   []*upcastDef
	// groupCommit: WithGroupCommit.
	groupCommit bool
}

type optionFunc[S any] func(*typeBuilder[S]) error

func (f optionFunc[S]) apply(b *typeBuilder[S]) error { return f(b) }

// EventMeta is what an event carries besides its payload, for appliers that
// want it ([OnMeta]).
type EventMeta struct {
	StreamID  string
	Version   uint64
	Metadata  codec.Metadata
	Timestamp int64 // milliseconds since the epoch
}

// On registers event type E with the function that applies it to the state.
// Appliers cannot fail: validation belongs in command handlers.
func On[S any, E Event](apply func(s *S, e E)) Option[S] {
	return OnMeta(func(s *S, e E, _ EventMeta) { apply(s, e) })
}

// OnMeta is [On] for appliers that also read the event's metadata.
func OnMeta[S any, E Event](apply func(s *S, e E, m EventMeta)) Option[S] {
	return optionFunc[S](func(b *typeBuilder[S]) error {
		var zero E
		typ := reflect.TypeOf(zero)
		if typ == nil {
			return errors.New("aggregate: On needs a concrete event type, not an interface")
		}
		b.events = append(b.events, &eventDef[S]{
			name:    zero.EventName(),
			version: eventVersion(zero),
			typ:     typ,
			decode: func(f codec.Format, payload []byte, wrapped string) (Event, error) {
				var e E
				if err := codec.DecodePayload(f, payload, wrapped, &e); err != nil {
					return nil, err
				}
				return e, nil
			},
			apply: func(s *S, ev Event, m EventMeta) { apply(s, ev.(E), m) },
		})
		return nil
	})
}

// CommandOption configures one command of a [Type]; see [Handle].
type CommandOption[S any, C Command] func(*commandDef[S])

// IdempotentIf adds a state-based idempotency check: when it returns true,
// the command is not handled and the result is idempotent (kameo_es's
// is_state_idempotent), e.g. "the account is already closed".
func IdempotentIf[S any, C Command](check func(s S, c C, ctx *CommandContext) bool) CommandOption[S, C] {
	return func(d *commandDef[S]) {
		d.idempotent = func(s S, cmd Command, ctx *CommandContext) bool { return check(s, cmd.(C), ctx) }
	}
}

// Limit caps the command at max per entity in any sliding window, counted
// from the entity's own history (so the limit holds across processes and
// restarts). Each command counts once, whatever the number of its events;
// idempotent, rejected and event-less commands do not count. The check
// runs after the idempotency checks, so a duplicate is answered as such.
func Limit[S any, C Command](max int, window time.Duration) CommandOption[S, C] {
	return func(d *commandDef[S]) { d.limit = &RateLimit{Max: max, Window: window} }
}

// Handle registers command type C with its handler. The handler reads the
// state (a copy: it must not change maps or slices inside it) and the
// [CommandContext], and returns the events to append, or an error that rejects the
// command (nothing is written). Every returned event type must be
// registered with [On].
func Handle[S any, C Command](handle func(s S, c C, ctx *CommandContext) ([]Event, error), opts ...CommandOption[S, C]) Option[S] {
	return optionFunc[S](func(b *typeBuilder[S]) error {
		var zero C
		typ := reflect.TypeOf(zero)
		if typ == nil {
			return errors.New("aggregate: Handle needs a concrete command type, not an interface")
		}
		d := &commandDef[S]{
			name: zero.CommandName(),
			typ:  typ,
			decode: func(f codec.Format, payload []byte) (Command, error) {
				var c C
				if len(payload) == 0 {
					return c, nil
				}
				if err := codec.Unmarshal(f, payload, &c); err != nil {
					return nil, err
				}
				return c, nil
			},
			handle: func(s S, cmd Command, ctx *CommandContext) ([]Event, error) { return handle(s, cmd.(C), ctx) },
		}
		for _, o := range opts {
			o(d)
		}
		b.commands = append(b.commands, d)
		return nil
	})
}

// WithInitialState sets the state a new entity starts from.
// Default: the zero value of S.
func WithInitialState[S any](newState func() S) Option[S] {
	return optionFunc[S](func(b *typeBuilder[S]) error { b.newState = newState; return nil })
}

// WithFormat sets the payload format of events. Default: codec.CBOR, the
// format kameo_es reads.
func WithFormat[S any](f codec.Format) Option[S] {
	return optionFunc[S](func(b *typeBuilder[S]) error { b.format = f; return nil })
}

// WithPartitionKey derives every entity's partition key from its id instead
// of from its stream id. Entities that take part in one transaction must
// share a partition key (SierraDB's atomic appends stay in one partition).
// The function must be stable: a stream is bound to its first key.
func WithPartitionKey[S any, ID comparable](key func(id ID) uuid.UUID) Option[S] {
	return optionFunc[S](func(b *typeBuilder[S]) error { b.keyFunc = key; return nil })
}

// Define builds an entity type. The category names its streams
// ("<category>-<id>"): 1 to 48 bytes, without '-', NUL or ':'.
func Define[S any, ID comparable](category string, opts ...Option[S]) (*Type[S, ID], error) {
	var errs []error
	if category == "" || len(category) > 48 || strings.ContainsAny(category, "-:\x00") {
		errs = append(errs, fmt.Errorf("aggregate: category %q must be 1 to 48 bytes without '-', ':' or NUL", category))
	}
	b := &typeBuilder[S]{}
	for _, o := range opts {
		if err := o.apply(b); err != nil {
			errs = append(errs, err)
		}
	}
	t := &Type[S, ID]{
		category:    category,
		newStateF:   b.newState,
		format:      b.format,
		events:      make(map[string]*eventDef[S]),
		eventTypes:  make(map[reflect.Type]string),
		commands:    make(map[string]*commandDef[S]),
		cmdTypes:    make(map[reflect.Type]string),
		snapshots:   b.snapshots,
		groupCommit: b.groupCommit,
	}
	if t.newStateF == nil {
		t.newStateF = func() S { var s S; return s }
	}
	for _, e := range b.events {
		switch {
		case e.name == "" || len(e.name) > sierradb.MaxEventNameLen:
			errs = append(errs, fmt.Errorf("aggregate: event %s: name %q must be 1 to 255 bytes", e.typ, e.name))
		case t.events[e.name] != nil:
			errs = append(errs, fmt.Errorf("aggregate: event name %q registered twice (%s and %s)", e.name, t.events[e.name].typ, e.typ))
		case t.eventTypes[e.typ] != "":
			errs = append(errs, fmt.Errorf("aggregate: event type %s registered twice", e.typ))
		case e.version < 1:
			errs = append(errs, fmt.Errorf("aggregate: event %s: EventVersion %d must be 1 or more", e.typ, e.version))
		default:
			t.events[e.name] = e
			t.eventTypes[e.typ] = e.name
		}
	}
	errs = append(errs, t.buildHistory(b.upcasts)...)
	for _, c := range b.commands {
		switch {
		case c.name == "":
			errs = append(errs, fmt.Errorf("aggregate: command %s has an empty name", c.typ))
		case t.commands[c.name] != nil:
			errs = append(errs, fmt.Errorf("aggregate: command name %q registered twice", c.name))
		case t.cmdTypes[c.typ] != "":
			errs = append(errs, fmt.Errorf("aggregate: command type %s registered twice", c.typ))
		default:
			t.commands[c.name] = c
			t.cmdTypes[c.typ] = c.name
			if c.limit != nil {
				if t.limits == nil {
					t.limits = make(map[string]int)
				}
				t.limits[c.name] = c.limit.Max
			}
		}
	}
	if b.keyFunc != nil {
		kf, ok := b.keyFunc.(func(ID) uuid.UUID)
		if !ok {
			errs = append(errs, fmt.Errorf("aggregate: WithPartitionKey takes a func(%s) uuid.UUID", reflect.TypeFor[ID]()))
		}
		t.keyFunc = kf
	}
	var err error
	t.formatID, t.parseID, err = idCodec[ID]()
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// MustDefine is [Define] that panics on an error, for package-level
// definitions.
func MustDefine[S any, ID comparable](category string, opts ...Option[S]) *Type[S, ID] {
	t, err := Define[S, ID](category, opts...)
	if err != nil {
		panic(err)
	}
	return t
}

// Category returns the type's category.
func (t *Type[S, ID]) Category() string { return t.category }

// StreamID returns the stream id of an entity: "<category>-<id>".
func (t *Type[S, ID]) StreamID(id ID) string { return t.category + "-" + t.formatID(id) }

// FormatID returns the string form of an id, as it appears in stream ids.
func (t *Type[S, ID]) FormatID(id ID) string { return t.formatID(id) }

// ParseID parses the string form of an id.
func (t *Type[S, ID]) ParseID(s string) (ID, error) { return t.parseID(s) }

// ParseStreamID returns the id of an entity stream of this type.
func (t *Type[S, ID]) ParseStreamID(streamID string) (ID, error) {
	rest, ok := strings.CutPrefix(streamID, t.category+"-")
	if !ok {
		var zero ID
		return zero, fmt.Errorf("aggregate: stream %q is not of category %q", streamID, t.category)
	}
	return t.parseID(rest)
}

// CommandNames lists the type's command names.
func (t *Type[S, ID]) CommandNames() []string {
	names := make([]string, 0, len(t.commands))
	for n := range t.commands {
		names = append(names, n)
	}
	return names
}

// EventNames lists the type's event names.
func (t *Type[S, ID]) EventNames() []string {
	names := make([]string, 0, len(t.events))
	for n := range t.events {
		names = append(names, n)
	}
	return names
}

// Format returns the type's payload format.
func (t *Type[S, ID]) Format() codec.Format { return t.format }

// DecodeCommand decodes a command of this type from its name and encoded
// form. An unknown name gives an [*UnknownCommandError].
func (t *Type[S, ID]) DecodeCommand(name string, f codec.Format, payload []byte) (Command, error) {
	d := t.commands[name]
	if d == nil {
		return nil, &UnknownCommandError{Category: t.category, Command: name}
	}
	c, err := d.decode(f, payload)
	if err != nil {
		return nil, &CommandDecodeError{Category: t.category, Command: name, Err: err}
	}
	return c, nil
}

// DecodeEvent decodes a stored event of this type into its registered Go
// type, in its current shape: an event stored under an old name or an
// older schema version (the esv metadata key; absent means 1) goes through
// the type's upcasters ([Upcast], [UpcastFields], [Rename]). The returned
// metadata is the stored one (its EventVersion is the stored version).
//
// Every error is an [*EventDecodeError] (matching [ErrEventDecode]): an
// unregistered name or an old version without upcaster (also matching
// [ErrUnknownEvent]), a payload or metadata that does not decode, an
// upcaster's error (an [*UpcastError]), or a schema version newer than the
// code knows (an [*EventTooNewError]).
func (t *Type[S, ID]) DecodeEvent(ev sierradb.Event) (Event, codec.Metadata, error) {
	m, err := codec.DecodeMetadata(ev.Metadata)
	if err != nil {
		return nil, codec.Metadata{}, &EventDecodeError{StreamID: ev.StreamID, Version: ev.StreamVersion, Name: ev.Name, SchemaVersion: 1, Err: err}
	}
	e, err := t.decodeStored(ev.Name, m.SchemaVersion(), ev.Payload)
	if err != nil {
		return nil, codec.Metadata{}, &EventDecodeError{StreamID: ev.StreamID, Version: ev.StreamVersion, Name: ev.Name, SchemaVersion: m.SchemaVersion(), Err: err}
	}
	return e, m, nil
}

// EncodeEvent encodes an event of this type into its stored name and
// payload. An event type not registered with [On] gives an error matching
// [ErrUnknownEvent]. The payload is all: an event whose schema version is
// above 1 ([VersionedEvent]) must also be stored with that version in its
// metadata ([codec.Metadata.EventVersion]), as the executor does.
func (t *Type[S, ID]) EncodeEvent(ev Event) (string, []byte, error) {
	if ev == nil {
		return "", nil, fmt.Errorf("aggregate: nil event: %w", ErrUnknownEvent)
	}
	name, ok := t.eventTypes[reflect.TypeOf(ev)]
	if !ok {
		return "", nil, fmt.Errorf("aggregate: event type %T is not registered with On for %q: %w", ev, t.category, ErrUnknownEvent)
	}
	payload, err := codec.EncodePayload(t.format, name, ev)
	return name, payload, err
}

// idCodec returns the string conversions of an id type: strings as they
// are, integers in decimal, and types that implement
// encoding.TextMarshaler and encoding.TextUnmarshaler (uuid.UUID, for
// one) through them.
func idCodec[ID comparable]() (func(ID) string, func(string) (ID, error), error) {
	typ := reflect.TypeFor[ID]()
	textM := typ.Implements(reflect.TypeFor[encoding.TextMarshaler]())
	textU := reflect.PointerTo(typ).Implements(reflect.TypeFor[encoding.TextUnmarshaler]())
	switch {
	case textM && textU:
		format := func(id ID) string {
			b, _ := any(id).(encoding.TextMarshaler).MarshalText()
			return string(b)
		}
		parse := func(s string) (ID, error) {
			var id ID
			err := any(&id).(encoding.TextUnmarshaler).UnmarshalText([]byte(s))
			return id, err
		}
		return format, parse, nil
	case typ.Kind() == reflect.String:
		return func(id ID) string { return reflect.ValueOf(id).String() },
			func(s string) (ID, error) {
				var id ID
				reflect.ValueOf(&id).Elem().SetString(s)
				return id, nil
			}, nil
	case typ.Kind() >= reflect.Int && typ.Kind() <= reflect.Int64:
		return func(id ID) string { return strconv.FormatInt(reflect.ValueOf(id).Int(), 10) },
			func(s string) (ID, error) {
				var id ID
				n, err := strconv.ParseInt(s, 10, typ.Bits())
				if err != nil {
					return id, err
				}
				reflect.ValueOf(&id).Elem().SetInt(n)
				return id, nil
			}, nil
	case typ.Kind() >= reflect.Uint && typ.Kind() <= reflect.Uint64:
		return func(id ID) string { return strconv.FormatUint(reflect.ValueOf(id).Uint(), 10) },
			func(s string) (ID, error) {
				var id ID
				n, err := strconv.ParseUint(s, 10, typ.Bits())
				if err != nil {
					return id, err
				}
				reflect.ValueOf(&id).Elem().SetUint(n)
				return id, nil
			}, nil
	}
	return nil, nil, fmt.Errorf("aggregate: id type %s has no string form: use a string or integer kind, or implement encoding.TextMarshaler and TextUnmarshaler", typ)
}

// Format is a payload format (codec.CBOR or codec.JSON).
type Format = codec.Format

// partitionKey returns an entity's partition key.
func (t *Type[S, ID]) partitionKey(id ID) uuid.UUID {
	if t.keyFunc != nil {
		return t.keyFunc(id)
	}
	return sierradb.StreamPartitionKey(t.StreamID(id))
}

// PartitionKey returns the partition key of an entity.
func (t *Type[S, ID]) PartitionKey(id ID) uuid.UUID { return t.partitionKey(id) }
