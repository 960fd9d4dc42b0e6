// Package backoff is esmill's one backoff: exponential delays with jitter,
// waited for under a context. Every retry loop of the module uses it: the
// subscription's reconnection, the executor's and the transactions'
// retries, the Retry middleware, the projection runner, and the Pub/Sub
// subscriber's redelivery delay and publisher's conflict retries.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy shapes a backoff. The zero value waits not at all.
type Policy struct {
	// Initial is the first delay.
	Initial time.Duration
	// Max caps every delay, jitter included. Zero: no cap.
	Max time.Duration
	// Multiplier grows the delay after each one. Default (zero): 2.
	Multiplier float64
	// Jitter, between 0 and 1, is the random fraction added to or taken
	// from each delay, so that processes retrying together spread out.
	Jitter float64
}

// Backoff hands out the delays of one retry loop. It is not safe for
// concurrent use: each loop makes its own with [Policy.Start].
type Backoff struct {
	p    Policy
	next time.Duration
	n    int
}

// Start returns a backoff at its first delay.
func (p Policy) Start() *Backoff {
	if p.Multiplier == 0 {
		p.Multiplier = 2
	}
	return &Backoff{p: p, next: p.Initial}
}

// Next returns the next delay and grows the one after it.
func (b *Backoff) Next() time.Duration {
	d := b.next
	b.n++
	grown := time.Duration(float64(b.next) * b.p.Multiplier)
	if b.p.Max > 0 {
		grown = min(grown, b.p.Max)
	}
	b.next = grown
	if j := b.p.Jitter; j > 0 && d > 0 {
		d = time.Duration(float64(d) * (1 + j*(2*rand.Float64()-1)))
	}
	if b.p.Max > 0 {
		d = min(d, b.p.Max)
	}
	return max(d, 0)
}

// Attempts returns how many delays Next has handed out since the start or
// the last Reset.
func (b *Backoff) Attempts() int { return b.n }

// Reset goes back to the first delay, after a success.
func (b *Backoff) Reset() { b.next, b.n = b.p.Initial, 0 }

// Wait sleeps for the next delay, or until ctx is done, whose error it
// then returns.
func (b *Backoff) Wait(ctx context.Context) error { return Sleep(ctx, b.Next()) }

// Sleep waits for d, or until ctx is done, whose error it then returns.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
