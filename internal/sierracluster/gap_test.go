package sierracluster

import (
	"testing"
	"time"
)

func TestLongestGap(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// Unsorted, with moments outside [from, to].
	times := []time.Time{at(50), at(-10), at(400), at(100), at(900), at(120)}
	for _, c := range []struct {
		from, to int
		want     time.Duration
	}{
		{0, 1000, 500 * time.Millisecond}, // 400 → 900
		{0, 300, 180 * time.Millisecond},  // 120 → to
		{500, 600, 100 * time.Millisecond},
	} {
		if got := LongestGap(times, at(c.from), at(c.to)); got != c.want {
			t.Errorf("LongestGap(%d..%d) = %v, want %v", c.from, c.to, got, c.want)
		}
	}
}
