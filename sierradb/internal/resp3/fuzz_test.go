package resp3_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// FuzzReader feeds arbitrary bytes to the reader. It must never panic, and
// whatever it accepts must survive a write and a second read unchanged.
func FuzzReader(f *testing.F) {
	seeds := []string{
		"+OK\r\n", "-WRONGVER current stream version is 3 but expected 2\r\n",
		"$5\r\nhello\r\n", "$-1\r\n", "*-1\r\n", "=9\r\ntxt:hello\r\n", ":42\r\n",
		",3.14\r\n", ",inf\r\n", "#t\r\n", "_\r\n", "(12345678901234567890\r\n",
		"!3\r\nERR\r\n", "*2\r\n:1\r\n$1\r\na\r\n", "~1\r\n#f\r\n",
		"%2\r\n+event_id\r\n+0190a8b4-7c1e-7000-8000-000000000000\r\n+partition_id\r\n:21\r\n",
		">4\r\n+message\r\n+a1b2\r\n:0\r\n%1\r\n+stream_version\r\n:0\r\n",
		">3\r\n+subscribe\r\n+a1b2\r\n:1\r\n",
		"|1\r\n+key\r\n+val\r\n:1\r\n",
		"$99999999999\r\n", "*99999999999\r\n", "%3\r\n", "*1\r\n*1\r\n*1\r\n*1\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := resp3.NewReaderLimits(bytes.NewReader(data), resp3.Limits{MaxBlobLen: 1 << 20, MaxElems: 1 << 16, MaxFrameBytes: 8 << 20})
		for {
			v, err := r.ReadValue()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, resp3.ErrProtocol) && !errors.Is(err, resp3.ErrFrameBudget) {
					t.Fatalf("unexpected error type: %v", err)
				}
				return
			}
			var buf bytes.Buffer
			w := resp3.NewWriter(&buf)
			w.WriteValue(v)
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			again, err := resp3.NewReader(&buf).ReadValue()
			if err != nil {
				t.Fatalf("re-reading %s: %v", v, err)
			}
			if again.String() != v.String() {
				t.Fatalf("round trip changed %s into %s", v, again)
			}
		}
	})
}
