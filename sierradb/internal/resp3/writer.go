package resp3

import (
	"bufio"
	"io"
	"math"
	"strconv"
	"strings"
)

// Writer encodes RESP3 frames into a buffered stream. Nothing reaches the
// underlying writer before [Writer.Flush]. It is not safe for concurrent use.
type Writer struct {
	bw  *bufio.Writer
	num []byte
}

// NewWriter returns a Writer over w.
func NewWriter(w io.Writer) *Writer {
	bw, ok := w.(*bufio.Writer)
	if !ok {
		bw = bufio.NewWriterSize(w, 32<<10)
	}
	return &Writer{bw: bw, num: make([]byte, 0, 24)}
}

// Flush writes buffered frames to the underlying writer.
func (w *Writer) Flush() error { return w.bw.Flush() }

// Buffered returns the number of bytes waiting for Flush.
func (w *Writer) Buffered() int { return w.bw.Buffered() }

func (w *Writer) header(t Type, n int64) {
	w.bw.WriteByte(byte(t))
	w.num = strconv.AppendInt(w.num[:0], n, 10)
	w.bw.Write(w.num)
	w.bw.WriteString("\r\n")
}

// lineSafe replaces CR and LF, which would break the framing of a line-typed
// frame, with spaces.
var lineSafe = strings.NewReplacer("\r", " ", "\n", " ")

func (w *Writer) line(t Type, s string) {
	w.bw.WriteByte(byte(t))
	if strings.ContainsAny(s, "\r\n") {
		s = lineSafe.Replace(s)
	}
	w.bw.WriteString(s)
	w.bw.WriteString("\r\n")
}

// WriteSimpleString writes a simple string. CR and LF become spaces.
func (w *Writer) WriteSimpleString(s string) { w.line(SimpleString, s) }

// WriteError writes a simple error. CR and LF become spaces.
func (w *Writer) WriteError(s string) { w.line(SimpleError, s) }

// WriteBlob writes a blob string.
func (w *Writer) WriteBlob(b []byte) {
	w.header(BlobString, int64(len(b)))
	w.bw.Write(b)
	w.bw.WriteString("\r\n")
}

// WriteBlobString writes a blob string.
func (w *Writer) WriteBlobString(s string) {
	w.header(BlobString, int64(len(s)))
	w.bw.WriteString(s)
	w.bw.WriteString("\r\n")
}

// WriteBlobError writes a blob error.
func (w *Writer) WriteBlobError(s string) {
	w.header(BlobError, int64(len(s)))
	w.bw.WriteString(s)
	w.bw.WriteString("\r\n")
}

// WriteVerbatim writes a verbatim string with a three-letter format.
func (w *Writer) WriteVerbatim(format, text string) {
	w.header(Verbatim, int64(len(text)+4))
	w.bw.WriteString(format)
	w.bw.WriteByte(':')
	w.bw.WriteString(text)
	w.bw.WriteString("\r\n")
}

// WriteInt writes an integer.
func (w *Writer) WriteInt(n int64) { w.header(Integer, n) }

// WriteDouble writes a double.
func (w *Writer) WriteDouble(f float64) {
	var s string
	switch {
	case math.IsInf(f, 1):
		s = "inf"
	case math.IsInf(f, -1):
		s = "-inf"
	case math.IsNaN(f):
		s = "nan"
	default:
		s = strconv.FormatFloat(f, 'g', -1, 64)
	}
	w.line(Double, s)
}

// WriteBool writes a boolean.
func (w *Writer) WriteBool(b bool) {
	if b {
		w.bw.WriteString("#t\r\n")
	} else {
		w.bw.WriteString("#f\r\n")
	}
}

// WriteNull writes a null.
func (w *Writer) WriteNull() { w.bw.WriteString("_\r\n") }

// WriteBigNumber writes a big number given as decimal digits.
func (w *Writer) WriteBigNumber(digits string) { w.line(BigNumber, digits) }

// WriteArrayHeader starts an array of n elements.
func (w *Writer) WriteArrayHeader(n int) { w.header(Array, int64(n)) }

// WriteSetHeader starts a set of n elements.
func (w *Writer) WriteSetHeader(n int) { w.header(Set, int64(n)) }

// WritePushHeader starts a push of n elements.
func (w *Writer) WritePushHeader(n int) { w.header(Push, int64(n)) }

// WriteMapHeader starts a map of n key/value pairs.
func (w *Writer) WriteMapHeader(n int) { w.header(Map, int64(n)) }

// WriteCommand writes a request: an array of blob strings.
func (w *Writer) WriteCommand(args ...string) {
	w.WriteArrayHeader(len(args))
	for _, a := range args {
		w.WriteBlobString(a)
	}
}

// WriteValue writes v and everything inside it.
func (w *Writer) WriteValue(v Value) {
	switch v.Type {
	case SimpleString, SimpleError, BigNumber:
		w.line(v.Type, string(v.Str))
	case BlobString:
		w.WriteBlob(v.Str)
	case BlobError:
		w.WriteBlobError(string(v.Str))
	case Verbatim:
		format := v.Format
		if len(format) != 3 {
			format = "txt"
		}
		w.WriteVerbatim(format, string(v.Str))
	case Integer:
		w.WriteInt(v.Int)
	case Double:
		w.WriteDouble(v.Float)
	case Boolean:
		w.WriteBool(v.Bool)
	case Null:
		w.WriteNull()
	case Map, Attribute:
		w.header(v.Type, int64(len(v.Elems)/2))
		for _, e := range v.Elems[:len(v.Elems)/2*2] {
			w.WriteValue(e)
		}
	default:
		w.header(v.Type, int64(len(v.Elems)))
		for _, e := range v.Elems {
			w.WriteValue(e)
		}
	}
}
