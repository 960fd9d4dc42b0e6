package embedded

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// The argument parsers follow SierraDB 0.3.1's (combine-based) parser: what
// counts as a string or a number, which token an error names, and the
// "unexpected <kind>: expected A, B or C" texts it builds.

// args walks the arguments of one request (the command name excluded).
type args struct {
	v []resp3.Value
	i int
}

func (a *args) more() bool { return a.i < len(a.v) }

// trailing fails unless every argument was consumed. expected lists what
// the parser would have taken instead of the next argument; "end of input"
// is added last.
func (a *args) trailing(expected ...string) error {
	if a.more() {
		return unexpected(a.v[a.i], append(expected, "end of input")...)
	}
	return nil
}

// end fails unless every argument was consumed.
func (a *args) end() error { return a.trailing() }

// unexpected is SierraDB's parse error for token v.
func unexpected(v resp3.Value, expected ...string) error {
	return errorf(msgUnexpected, kindOf(v), expectedList(expected))
}

// endOfInput is SierraDB's parse error for a missing argument.
func endOfInput(expected ...string) error {
	return errorf(msgEndOfInput, expectedList(expected))
}

// expectedList joins alternatives as combine does: "a", "a or b",
// "a, b or c".
func expectedList(alts []string) string {
	switch len(alts) {
	case 0:
		return ""
	case 1:
		return alts[0]
	}
	return strings.Join(alts[:len(alts)-1], ", ") + " or " + alts[len(alts)-1]
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

// dataValue returns the bytes of a string argument: a blob or simple
// string, or a verbatim string of format txt. Other frames are not strings
// to SierraDB, big numbers included.
func dataValue(v resp3.Value) ([]byte, bool) {
	switch {
	case v.Type == resp3.BlobString, v.Type == resp3.SimpleString, v.Type == resp3.Verbatim && v.Format == "txt":
		return v.Str, true
	}
	return nil, false
}

// isText reports whether v is a string argument.
func isText(v resp3.Value) bool {
	_, ok := dataValue(v)
	return ok
}

// textValue returns a string argument that is valid UTF-8.
func textValue(v resp3.Value) (string, bool) {
	b, ok := dataValue(v)
	if !ok || !utf8.Valid(b) {
		return "", false
	}
	return string(b), true
}

// keywordOf returns a text argument in upper case, to compare with a
// keyword.
func keywordOf(v resp3.Value) (string, bool) {
	s, ok := textValue(v)
	if !ok {
		return "", false
	}
	return strings.ToUpper(s), true
}

// peekKeyword reports whether the next argument is the keyword kw (upper
// case), compared case-insensitively.
func (a *args) peekKeyword(kw string) bool {
	if !a.more() {
		return false
	}
	s, ok := keywordOf(a.v[a.i])
	return ok && s == kw
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
		return resp3.Value{}, endOfInput(what)
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
	b, ok := dataValue(v)
	if !ok {
		return nil, unexpected(v, what)
	}
	return b, nil
}

// str reads a UTF-8 string argument.
func (a *args) str(what string) (string, error) {
	v, err := a.next(what)
	if err != nil {
		return "", err
	}
	s, ok := textValue(v)
	if !ok {
		return "", unexpected(v, what)
	}
	return s, nil
}

// u64 reads an unsigned number; what is "number" in SierraDB's messages.
func (a *args) u64() (uint64, error) {
	v, err := a.next("number")
	if err != nil {
		return 0, err
	}
	n, ok := numberValue(v)
	if !ok {
		return 0, unexpected(v, "number")
	}
	return n, nil
}

// numberValue reads an unsigned number: an integer, or a string or big
// number of digits with an optional leading '+', as Rust's u64 parser
// takes them.
func numberValue(v resp3.Value) (uint64, bool) {
	switch v.Type {
	case resp3.Integer:
		if v.Int < 0 {
			return 0, false
		}
		return uint64(v.Int), true
	case resp3.BigNumber:
		return parseDigits(string(v.Str))
	}
	s, ok := textValue(v)
	if !ok {
		return 0, false
	}
	return parseDigits(s)
}

// parseDigits parses a decimal number with an optional leading '+'.
func parseDigits(s string) (uint64, bool) {
	s = strings.TrimPrefix(s, "+")
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// int64Value reads a signed number, as Rust's i64 parser takes it.
func int64Value(v resp3.Value) (int64, bool) {
	if v.Type == resp3.Integer {
		return v.Int, true
	}
	s, ok := textValue(v)
	if v.Type == resp3.BigNumber {
		s, ok = string(v.Str), true
	}
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64) // like Rust's: an optional sign, digits
	return n, err == nil
}

// uuidValue reads a UUID in any of the forms SierraDB accepts: hyphenated,
// 32 hex digits, braced or urn:uuid:, with surrounding spaces.
func uuidValue(v resp3.Value) (uuid.UUID, bool) {
	s, ok := textValue(v)
	if !ok {
		return uuid.Nil, false
	}
	return parseUUID(s)
}

func parseUUID(s string) (uuid.UUID, bool) {
	s = strings.TrimSpace(s)
	if len(s) == 45 && !strings.HasPrefix(s, "urn:uuid:") {
		return uuid.Nil, false
	}
	id, err := uuid.Parse(s)
	return id, err == nil
}

// uuidArg reads a UUID; a string that is not one fails with "invalid
// <what>".
func (a *args) uuidArg(what string) (uuid.UUID, error) {
	v, err := a.next(what)
	if err != nil {
		return uuid.Nil, err
	}
	if _, ok := textValue(v); !ok {
		return uuid.Nil, unexpected(v, what)
	}
	id, ok := uuidValue(v)
	if !ok {
		return uuid.Nil, errorf(msgInvalid, what)
	}
	return id, nil
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

// expectedVersionValue reads ANY, EXISTS, EMPTY or a number.
func expectedVersionValue(v resp3.Value) (sierradb.ExpectedVersion, bool) {
	if n, ok := numberValue(v); ok {
		return sierradb.ExpectVersion(n), true
	}
	kw, _ := keywordOf(v)
	switch kw {
	case "ANY":
		return sierradb.ExpectAny, true
	case "EXISTS":
		return sierradb.ExpectExists, true
	case "EMPTY":
		return sierradb.ExpectEmpty, true
	}
	return sierradb.ExpectedVersion{}, false
}

// rangeBound is one end of an ESCAN or EPSCAN range.
type rangeBound struct {
	kind byte // '-', '+' or 'n'
	n    uint64
}

// rangeValue reads -, + or a number.
func (a *args) rangeValue() (rangeBound, error) {
	const expected = "range value (-, +, or number)"
	v, err := a.next(expected)
	if err != nil {
		return rangeBound{}, err
	}
	switch s, _ := textValue(v); s {
	case "-":
		return rangeBound{kind: '-'}, nil
	case "+":
		return rangeBound{kind: '+'}, nil
	}
	n, ok := numberValue(v)
	if !ok {
		return rangeBound{}, unexpected(v, expected)
	}
	return rangeBound{kind: 'n', n: n}, nil
}

// checkRange applies the '+'/'-' rules to a parsed range (SierraDB checks
// them after parsing the whole command). noun is "version" or "sequence". A
// nil end means no bound.
func checkRange(s, e rangeBound, noun string) (start uint64, end *uint64, err error) {
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
	if e.kind == 'n' {
		n := e.n
		end = &n
	}
	return s.n, end, nil
}

// partitionSelector reads a UUID (mapped to its partition) or a partition
// id. It does not check the id against the partition count.
func (a *args) partitionSelector(count uint16) (uint16, error) {
	const what = "partition id or key"
	v, err := a.next(what)
	if err != nil {
		return 0, err
	}
	if key, ok := uuidValue(v); ok {
		return sierradb.PartitionID(key, count), nil
	}
	n, ok := numberValue(v)
	if !ok || n > 0xFFFF {
		return 0, unexpected(v, what)
	}
	return uint16(n), nil
}

func alreadySpecified(what string) error { return errorf(msgAlreadySpecified, what) }
