package embedded

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// args walks the arguments of one request (the command name excluded).
type args struct {
	v []resp3.Value
	i int
}

func (a *args) more() bool { return a.i < len(a.v) }

// end fails unless every argument was consumed.
func (a *args) end() error {
	if a.more() {
		return errorf(msgUnexpected, kindOf(a.v[a.i]), "end of input")
	}
	return nil
}

// kindOf names a frame type the way the real parser's messages do.
func kindOf(v resp3.Value) string {
	switch v.Type {
	case resp3.BlobString, resp3.SimpleString, resp3.Verbatim:
		return "string"
	case resp3.Integer, resp3.BigNumber:
		return "number"
	case resp3.SimpleError, resp3.BlobError:
		return "error"
	case resp3.Boolean:
		return "boolean"
	case resp3.Null:
		return "null"
	case resp3.Double:
		return "double"
	case resp3.Array:
		return "array"
	case resp3.Map:
		return "map"
	case resp3.Set:
		return "set"
	case resp3.Push:
		return "push"
	}
	return "frame"
}

// isString reports whether v may be used as a string argument.
func isString(v resp3.Value) bool { return v.IsString() }

// peekKeyword reports whether the next argument is the keyword kw
// (upper case), compared case-insensitively.
func (a *args) peekKeyword(kw string) bool {
	if !a.more() {
		return false
	}
	v := a.v[a.i]
	return isString(v) && strings.EqualFold(string(v.Str), kw)
}

// keyword consumes the next argument if it is kw.
func (a *args) keyword(kw string) bool {
	if a.peekKeyword(kw) {
		a.i++
		return true
	}
	return false
}

// next returns the next argument, or an end-of-input error naming what was
// expected.
func (a *args) next(what string) (resp3.Value, error) {
	if !a.more() {
		return resp3.Value{}, errorf(msgEndOfInput, what)
	}
	v := a.v[a.i]
	a.i++
	return v, nil
}

// bytes reads a string argument as raw bytes.
func (a *args) bytes(what string) ([]byte, error) {
	v, err := a.next(what)
	if err != nil {
		return nil, err
	}
	if !isString(v) {
		return nil, errorf(msgUnexpected, kindOf(v), what)
	}
	return v.Str, nil
}

// str reads a UTF-8 string argument.
func (a *args) str(what string) (string, error) {
	b, err := a.bytes(what)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", errorf(msgInvalid, what+": not valid UTF-8")
	}
	return string(b), nil
}

// u64 reads an unsigned number: a string of digits, an integer or a big
// number.
func (a *args) u64(what string) (uint64, error) {
	v, err := a.next(what)
	if err != nil {
		return 0, err
	}
	n, ok := numberValue(v)
	if !ok {
		return 0, errorf(msgUnexpected, kindOf(v), what)
	}
	return n, nil
}

func numberValue(v resp3.Value) (uint64, bool) {
	switch v.Type {
	case resp3.Integer:
		if v.Int < 0 {
			return 0, false
		}
		return uint64(v.Int), true
	case resp3.BlobString, resp3.SimpleString, resp3.Verbatim, resp3.BigNumber:
		return parseDigits(string(v.Str))
	}
	return 0, false
}

// parseDigits parses a plain decimal number (no sign, no spaces).
func parseDigits(s string) (uint64, bool) {
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// uuidArg reads a UUID in any of the forms SierraDB accepts.
func (a *args) uuidArg(what string) (uuid.UUID, error) {
	v, err := a.next(what)
	if err != nil {
		return uuid.Nil, err
	}
	if !isString(v) {
		return uuid.Nil, errorf(msgUnexpected, kindOf(v), what)
	}
	id, ok := parseUUID(string(v.Str))
	if !ok {
		return uuid.Nil, errorf(msgInvalid, what)
	}
	return id, nil
}

func parseUUID(s string) (uuid.UUID, bool) {
	s = strings.TrimSpace(s)
	if len(s) == 45 && strings.EqualFold(s[:9], "urn:uuid:") {
		s = s[9:]
	}
	id, err := uuid.Parse(s)
	return id, err == nil
}

// streamID reads and validates a stream id.
func (a *args) streamID() (string, error) {
	s, err := a.str("stream id")
	if err != nil {
		return "", err
	}
	return s, checkStreamID(s)
}

// checkStreamID applies SierraDB's stream id rules with its error texts.
func checkStreamID(s string) error {
	if len(s) == 0 || len(s) > sierradb.MaxStreamIDLen {
		return errorf(msgStreamIDLength, len(s), s)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return cmdError(msgStreamIDNul)
	}
	return nil
}

// expectedVersion reads ANY, EXISTS, EMPTY or a number.
func (a *args) expectedVersion() (sierradb.ExpectedVersion, error) {
	const what = "expected version number or 'any', 'exists', 'empty'"
	v, err := a.next(what)
	if err != nil {
		return sierradb.ExpectedVersion{}, err
	}
	if n, ok := numberValue(v); ok {
		return sierradb.ExpectVersion(n), nil
	}
	if isString(v) {
		switch strings.ToLower(string(v.Str)) {
		case "any":
			return sierradb.ExpectAny, nil
		case "exists":
			return sierradb.ExpectExists, nil
		case "empty":
			return sierradb.ExpectEmpty, nil
		}
	}
	return sierradb.ExpectedVersion{}, errorf(msgUnexpected, kindOf(v), what)
}

// timestampNanos reads TIMESTAMP's milliseconds and converts them to
// nanoseconds as SierraDB does, rejecting a product that overflows 64 bits.
func (a *args) timestampNanos() (uint64, error) {
	ms, err := a.u64("timestamp")
	if err != nil {
		return 0, err
	}
	if ms > ^uint64(0)/1_000_000 {
		return 0, cmdError(msgTimestampFormat)
	}
	return ms * 1_000_000, nil
}

// rangeBound is one end of an ESCAN or EPSCAN range.
type rangeBound struct {
	kind byte // '-', '+' or 'n'
	n    uint64
}

func (a *args) rangeValue(what string) (rangeBound, error) {
	const expected = "range value (-, +, or number)"
	v, err := a.next(expected)
	if err != nil {
		return rangeBound{}, err
	}
	if isString(v) {
		switch string(v.Str) {
		case "-":
			return rangeBound{kind: '-'}, nil
		case "+":
			return rangeBound{kind: '+'}, nil
		}
	}
	n, ok := numberValue(v)
	if !ok {
		return rangeBound{}, errorf(msgUnexpected, kindOf(v), expected)
	}
	return rangeBound{kind: 'n', n: n}, nil
}

// rangeArgs reads <start> <end> and applies the '+'/'-' rules. noun is
// "version" or "sequence". A nil end means no bound.
func (a *args) rangeArgs(noun string) (start uint64, end *uint64, err error) {
	s, err := a.rangeValue(noun)
	if err != nil {
		return 0, nil, err
	}
	e, err := a.rangeValue(noun)
	if err != nil {
		return 0, nil, err
	}
	if s.kind == '+' {
		if noun == "version" {
			return 0, nil, cmdError(msgStartVersionPlus)
		}
		return 0, nil, cmdError(msgStartSequencePlus)
	}
	if e.kind == '-' {
		if noun == "version" {
			return 0, nil, cmdError(msgEndVersionMinus)
		}
		return 0, nil, cmdError(msgEndSequenceMinus)
	}
	start = s.n
	if e.kind == 'n' {
		n := e.n
		end = &n
	}
	return start, end, nil
}

// partitionSelector reads a UUID (mapped to its partition) or a partition
// id. It does not check the id against the partition count.
func (a *args) partitionSelector(count uint16) (uint16, error) {
	const what = "partition id or key"
	v, err := a.next(what)
	if err != nil {
		return 0, err
	}
	if isString(v) {
		if key, ok := parseUUID(string(v.Str)); ok {
			return sierradb.PartitionID(key, count), nil
		}
	}
	n, ok := numberValue(v)
	if !ok || n > 0xFFFF {
		return 0, errorf(msgUnexpected, kindOf(v), what)
	}
	return uint16(n), nil
}

func alreadySpecified(what string) error { return errorf(msgAlreadySpecified, what) }
