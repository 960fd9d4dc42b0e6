package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDelaysGrowToTheCap(t *testing.T) {
	b := Policy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}.Start()
	want := []time.Duration{10, 20, 40, 50, 50}
	for i, w := range want {
		if got := b.Next(); got != w*time.Millisecond {
			t.Fatalf("delay %d = %s, want %dms", i, got, w)
		}
	}
	if b.Attempts() != 5 {
		t.Fatalf("%d attempts", b.Attempts())
	}
	b.Reset()
	if got := b.Next(); got != 10*time.Millisecond || b.Attempts() != 1 {
		t.Fatalf("after Reset: %s, %d attempts", got, b.Attempts())
	}
}

func TestJitterStaysInItsBand(t *testing.T) {
	p := Policy{Initial: 100 * time.Millisecond, Multiplier: 1, Jitter: 0.5, Max: 120 * time.Millisecond}
	b := p.Start()
	lo, hi := time.Hour, time.Duration(0)
	for range 1000 {
		d := b.Next()
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 50*time.Millisecond || hi > 120*time.Millisecond || hi-lo < 40*time.Millisecond {
		t.Fatalf("delays between %s and %s, want spread within 50ms..120ms", lo, hi)
	}
}

func TestWaitHonoursTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := Policy{Initial: time.Hour}.Start()
	if err := b.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on a cancelled context: %v", err)
	}
	if err := Sleep(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if err := (Policy{}).Start().Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}
