package resp3_test

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// nulls is an array frame of n nulls: 3 bytes on the wire per element,
// resp3.ValueSize bytes once decoded.
func nulls(n int) string {
	return "*" + itoa(n) + "\r\n" + strings.Repeat("_\r\n", n)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestFrameBudgetCountsDecodedMemory(t *testing.T) {
	// 10,000 nulls are 30 KB on the wire but about 10,000 values decoded.
	in := nulls(10_000)
	limit := 5_000 * resp3.ValueSize
	r := resp3.NewReaderLimits(strings.NewReader(in), resp3.Limits{MaxFrameBytes: limit})
	_, err := r.ReadValue()
	var be *resp3.BudgetError
	if !errors.Is(err, resp3.ErrFrameBudget) || !errors.As(err, &be) || be.Shared || be.Limit != int64(limit) {
		t.Fatalf("got %v, want a per-frame BudgetError", err)
	}
	if r.FrameBytes() > int64(limit)+int64(16*resp3.ValueSize) && r.FrameBytes() > int64(2*limit) {
		t.Fatalf("charged %d bytes against a %d-byte budget", r.FrameBytes(), limit)
	}
	// Within the budget the same frame decodes.
	r = resp3.NewReaderLimits(strings.NewReader(in), resp3.Limits{MaxFrameBytes: 20_000 * resp3.ValueSize})
	v, err := r.ReadValue()
	if err != nil || v.Len() != 10_000 {
		t.Fatalf("got %d elements, %v", v.Len(), err)
	}
	// Blob bytes count as they arrive.
	r = resp3.NewReaderLimits(strings.NewReader("$200000\r\n"+strings.Repeat("x", 200_000)+"\r\n"), resp3.Limits{MaxFrameBytes: 100_000})
	if _, err := r.ReadValue(); !errors.Is(err, resp3.ErrFrameBudget) {
		t.Fatalf("blob beyond the budget: %v", err)
	}
}

func TestSharedBudget(t *testing.T) {
	shared := resp3.NewBudget(1 << 20)
	lim := resp3.Limits{Shared: shared, SharedFree: 4 << 10}
	// A small frame takes nothing from the shared budget.
	small := resp3.NewReaderLimits(strings.NewReader("*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n"), lim)
	if _, err := small.ReadValue(); err != nil {
		t.Fatal(err)
	}
	if shared.Used() != 0 {
		t.Fatalf("a PING reserved %d shared bytes", shared.Used())
	}
	// A big frame holds its memory until the next read.
	bigFrame := "$600000\r\n" + strings.Repeat("x", 600_000) + "\r\n"
	a := resp3.NewReaderLimits(strings.NewReader(bigFrame+"+OK\r\n"), lim)
	if _, err := a.ReadValue(); err != nil {
		t.Fatal(err)
	}
	if u := shared.Used(); u < 590_000 {
		t.Fatalf("shared budget holds %d bytes during a 600 KB frame", u)
	}
	// A second reader cannot take more than is left.
	b := resp3.NewReaderLimits(strings.NewReader(bigFrame), lim)
	_, err := b.ReadValue()
	var be *resp3.BudgetError
	if !errors.As(err, &be) || !be.Shared || be.Limit != 1<<20 {
		t.Fatalf("second big frame: %v, want a shared BudgetError", err)
	}
	b.Release()
	// Small frames still pass.
	if _, err := small.ReadValue(); err != nil {
		t.Fatalf("PING while the shared budget is taken: %v", err)
	}
	// The next read gives the first frame's memory back.
	if _, err := a.ReadValue(); err != nil {
		t.Fatal(err)
	}
	if u := shared.Used(); u != 0 {
		t.Fatalf("shared budget still holds %d bytes", u)
	}
	if _, err := a.ReadValue(); !errors.Is(err, io.EOF) {
		t.Fatalf("got %v, want EOF", err)
	}
	a.Release()
	if u := shared.Used(); u != 0 {
		t.Fatalf("shared budget holds %d bytes after Release", u)
	}
}
