package resp3

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"math/big"
	"strconv"
)

// Limits bound what a [Reader] accepts. A zero field takes its default.
type Limits struct {
	// MaxBlobLen is the largest blob string, blob error or verbatim string.
	// Default: 512 MiB.
	MaxBlobLen int
	// MaxElems is the largest element count an aggregate may declare
	// (a map counts its pairs). Default: 16 Mi.
	MaxElems int
	// MaxDepth is the deepest nesting of aggregates. Default: 64.
	MaxDepth int
	// MaxLineLen is the longest header or simple line, CRLF excluded.
	// Default: 64 KiB.
	MaxLineLen int
	// MaxFrameBytes bounds the decoded memory of one frame: every element
	// of an aggregate counts [ValueSize] bytes (as its slice grows), every
	// string its bytes. A frame beyond it fails with a [*BudgetError]
	// before the memory is allocated. Zero or less: no bound.
	MaxFrameBytes int
	// Shared, if set, is a budget shared with other readers: the memory of
	// a frame beyond SharedFree bytes is reserved from it, and a frame that
	// finds it exhausted fails with a [*BudgetError].
	Shared *Budget
	// SharedFree is the part of each frame not taken from Shared, so that
	// small frames never wait on, or fail because of, the shared budget
	// (tested: TestSharedBudget).
	// Default: 16 KiB.
	SharedFree int
}

// DefaultLimits are the limits a [Reader] uses for zero fields.
var DefaultLimits = Limits{
	MaxBlobLen: 512 << 20,
	MaxElems:   16 << 20,
	MaxDepth:   64,
	MaxLineLen: 64 << 10,
}

func (l Limits) withDefaults() Limits {
	if l.MaxBlobLen <= 0 {
		l.MaxBlobLen = DefaultLimits.MaxBlobLen
	}
	if l.MaxElems <= 0 {
		l.MaxElems = DefaultLimits.MaxElems
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultLimits.MaxDepth
	}
	if l.MaxLineLen <= 0 {
		l.MaxLineLen = DefaultLimits.MaxLineLen
	}
	if l.SharedFree <= 0 {
		l.SharedFree = 16 << 10
	}
	return l
}

// initialAlloc caps what is allocated up front for a declared length; the
// rest is allocated only as bytes or elements really arrive.
const (
	initialBlobAlloc = 64 << 10
	initialElems     = 16
)

// Reader decodes RESP3 frames from a byte stream. It is not safe for
// concurrent use.
type Reader struct {
	br       *bufio.Reader
	limits   Limits
	line     []byte
	used     int64 // decoded bytes charged to the current frame
	reserved int64 // bytes of limits.Shared held for the current frame
}

// NewReader returns a Reader over r with the default limits.
func NewReader(r io.Reader) *Reader { return NewReaderLimits(r, Limits{}) }

// NewReaderLimits returns a Reader over r with the given limits.
func NewReaderLimits(r io.Reader, limits Limits) *Reader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 32<<10)
	}
	return &Reader{br: br, limits: limits.withDefaults()}
}

// Buffered returns the number of bytes that can be read without touching the
// underlying reader.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// ReadValue reads one complete frame. Attributes are read and dropped; the
// value they annotate is returned. RESP2 null blobs and arrays ($-1, *-1)
// are returned as [Null].
//
// A malformed frame gives a [*ProtocolError]; a stream that ends inside a
// frame gives io.ErrUnexpectedEOF; a stream that ends between frames gives
// io.EOF. A frame beyond the memory limits gives a [*BudgetError].
//
// The memory charged to the previous frame is released first: the caller is
// assumed to be done with it.
func (r *Reader) ReadValue() (Value, error) {
	r.Release()
	if err := r.charge(ValueSize); err != nil {
		return Value{}, err
	}
	return r.read(0)
}

// WaitFrame blocks until the first byte of the next frame has arrived (or
// the stream fails). A server uses it to wait for an idle client without a
// deadline and then give the frame itself a deadline.
func (r *Reader) WaitFrame() error {
	_, err := r.br.Peek(1)
	return err
}

func (r *Reader) read(depth int) (Value, error) {
	if depth > r.limits.MaxDepth {
		return Value{}, protoErrorf("nesting deeper than %d", r.limits.MaxDepth)
	}
	for {
		line, err := r.readLine(depth == 0)
		if err != nil {
			return Value{}, err
		}
		if len(line) == 0 {
			return Value{}, protoErrorf("empty frame header")
		}
		t := Type(line[0])
		rest := line[1:]
		switch t {
		case SimpleString, SimpleError:
			if bytes.IndexByte(rest, '\r') >= 0 {
				return Value{}, protoErrorf("CR inside a %s", t)
			}
			if err := r.charge(len(rest)); err != nil {
				return Value{}, err
			}
			return Value{Type: t, Str: bytes.Clone(rest)}, nil
		case Integer:
			n, err := parseInt(rest)
			if err != nil {
				return Value{}, err
			}
			return Value{Type: t, Int: n}, nil
		case Double:
			f, err := parseDouble(rest)
			if err != nil {
				return Value{}, err
			}
			return Value{Type: t, Float: f}, nil
		case Boolean:
			switch string(rest) {
			case "t":
				return Value{Type: t, Bool: true}, nil
			case "f":
				return Value{Type: t, Bool: false}, nil
			}
			return Value{}, protoErrorf("invalid boolean %q", rest)
		case Null:
			if len(rest) != 0 {
				return Value{}, protoErrorf("invalid null %q", rest)
			}
			return Value{Type: Null}, nil
		case BigNumber:
			if _, ok := new(big.Int).SetString(string(rest), 10); !ok {
				return Value{}, protoErrorf("invalid big number %q", rest)
			}
			if err := r.charge(len(rest)); err != nil {
				return Value{}, err
			}
			return Value{Type: t, Str: bytes.Clone(rest)}, nil
		case BlobString, BlobError, Verbatim:
			n, err := parseInt(rest)
			if err != nil {
				return Value{}, err
			}
			if n == -1 && t == BlobString {
				return Value{Type: Null}, nil
			}
			if n < 0 || n > int64(r.limits.MaxBlobLen) {
				return Value{}, protoErrorf("%s length %d out of range", t, n)
			}
			body, err := r.readBlob(int(n))
			if err != nil {
				return Value{}, err
			}
			if t == Verbatim {
				if len(body) < 4 || body[3] != ':' {
					return Value{}, protoErrorf("verbatim string without format")
				}
				return Value{Type: t, Format: string(body[:3]), Str: body[4:]}, nil
			}
			return Value{Type: t, Str: body}, nil
		case Array, Set, Push, Map, Attribute:
			n, err := parseInt(rest)
			if err != nil {
				return Value{}, err
			}
			if n == -1 && t == Array {
				return Value{Type: Null}, nil
			}
			if n < 0 || n > int64(r.limits.MaxElems) {
				return Value{}, protoErrorf("%s length %d out of range", t, n)
			}
			count := int(n)
			if t == Map || t == Attribute {
				count *= 2
			}
			var elems []Value
			for i := 0; i < count; i++ {
				if len(elems) == cap(elems) {
					// Grow by hand, charging the new capacity first.
					grow := min(count-len(elems), max(cap(elems), initialElems))
					if err := r.charge(grow * ValueSize); err != nil {
						return Value{}, err
					}
					elems = append(make([]Value, 0, len(elems)+grow), elems...)
				}
				e, err := r.read(depth + 1)
				if err != nil {
					return Value{}, eofInside(err)
				}
				elems = append(elems, e)
			}
			if t == Attribute {
				// An attribute annotates the frame that follows it: drop it
				// and return that frame.
				continue
			}
			return Value{Type: t, Elems: elems}, nil
		default:
			return Value{}, protoErrorf("unknown frame type %q", line[0])
		}
	}
}

// readLine returns the next line without its CRLF. The slice is valid until
// the next read. atFrameStart says whether a clean EOF is allowed here.
func (r *Reader) readLine(atFrameStart bool) ([]byte, error) {
	r.line = r.line[:0]
	for {
		chunk, err := r.br.ReadSlice('\n')
		if err == nil {
			if len(r.line) == 0 {
				// Fast path: the whole line is in the buffer.
				return r.checkLine(chunk)
			}
			r.line = append(r.line, chunk...)
			return r.checkLine(r.line)
		}
		if err == bufio.ErrBufferFull {
			r.line = append(r.line, chunk...)
			if len(r.line) > r.limits.MaxLineLen+2 {
				return nil, protoErrorf("line longer than %d bytes", r.limits.MaxLineLen)
			}
			continue
		}
		if err == io.EOF {
			if atFrameStart && len(r.line) == 0 && len(chunk) == 0 {
				return nil, io.EOF
			}
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
}

func (r *Reader) checkLine(line []byte) ([]byte, error) {
	if len(line) > r.limits.MaxLineLen+2 {
		return nil, protoErrorf("line longer than %d bytes", r.limits.MaxLineLen)
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, protoErrorf("line not terminated by CRLF")
	}
	return line[:len(line)-2], nil
}

// readBlob reads n bytes and the CRLF after them. Memory grows with the bytes
// that really arrive, never with the declared length alone (tested:
// TestHugeDeclaredBlobDoesNotAllocate, TestFrameBudgetCountsDecodedMemory).
func (r *Reader) readBlob(n int) ([]byte, error) {
	first := min(n, initialBlobAlloc)
	if err := r.charge(first); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, first)
	for len(buf) < n {
		if len(buf) == cap(buf) {
			grow := min(n-len(buf), max(cap(buf), initialBlobAlloc))
			if err := r.charge(grow); err != nil {
				return nil, err
			}
			buf = append(make([]byte, 0, len(buf)+grow), buf...)
		}
		m, err := r.br.Read(buf[len(buf):min(n, cap(buf))])
		buf = buf[:len(buf)+m]
		if err != nil {
			if err == io.EOF {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	var crlf [2]byte
	if _, err := io.ReadFull(r.br, crlf[:]); err != nil {
		return nil, eofInside(err)
	}
	if crlf != [2]byte{'\r', '\n'} {
		return nil, protoErrorf("blob not terminated by CRLF")
	}
	return buf, nil
}

func eofInside(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func parseInt(b []byte) (int64, error) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, protoErrorf("invalid integer %q", b)
	}
	return n, nil
}

func parseDouble(b []byte) (float64, error) {
	switch string(b) {
	case "inf", "+inf":
		return math.Inf(1), nil
	case "-inf":
		return math.Inf(-1), nil
	case "nan", "-nan":
		return math.NaN(), nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return 0, protoErrorf("invalid double %q", b)
	}
	return f, nil
}
