package readmodel

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// refreshHeads reads the partitions' latest sequences every LagInterval.
// A head is shown as read, also when it is below the checkpoint: the
// divergence checks decide what that means, and Status does not hide it.
func (r *Runner[T]) refreshHeads(ctx context.Context) {
	t := time.NewTicker(r.cfg.LagInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.prog.mu.Lock()
		before := make(map[uint16]uint64, len(r.prog.applied))
		for p, s := range r.prog.applied {
			before[p] = s
		}
		r.prog.mu.Unlock()
		heads, err := r.cfg.Client.PartitionSequences(ctx, r.prog.partitions)
		if err != nil {
			if ctx.Err() == nil {
				r.cfg.Logger.Warn("readmodel: reading partition heads failed", "projection", r.cfg.Name, "error", err)
			}
			continue
		}
		r.prog.mu.Lock()
		for p, h := range heads {
			// An event applied while the read was under way may be past
			// the head it returned; one applied before was not.
			if s, ok := r.prog.applied[p]; ok && int64(s) > h {
				if b, had := before[p]; !had || b < s {
					h = int64(s)
				}
			}
			r.prog.heads[p] = h
		}
		r.prog.headsAt = r.cfg.Now()
		r.prog.mu.Unlock()
	}
}

// logProgress logs, every ProgressInterval while the runner catches up,
// the rate since the last log, what remains per partition and when it
// should be done.
func (r *Runner[T]) logProgress(ctx context.Context) {
	t := time.NewTicker(r.cfg.ProgressInterval)
	defer t.Stop()
	r.prog.mu.Lock()
	lastN, lastAt := r.prog.nApplied, time.Now()
	r.prog.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		r.prog.mu.Lock()
		state, n := r.prog.state, r.prog.nApplied
		type rem struct {
			p uint16
			n int64
		}
		var rems []rem
		var total int64
		for p := range r.prog.owned {
			if _, held := r.prog.held[p]; held {
				continue
			}
			applied := int64(-1)
			if s, ok := r.prog.applied[p]; ok {
				applied = int64(s)
			}
			if left := max(r.prog.heads[p], r.prog.targets[p]) - applied; left > 0 {
				rems = append(rems, rem{p, left})
				total += left
			}
		}
		r.prog.mu.Unlock()
		rate := float64(n-lastN) / now.Sub(lastAt).Seconds()
		lastN, lastAt = n, now
		if state != CatchingUp || total == 0 {
			continue
		}
		slices.SortFunc(rems, func(a, b rem) int { return int(b.n - a.n) })
		var per strings.Builder
		for i, x := range rems {
			if i == 16 {
				fmt.Fprintf(&per, " (+%d partitions)", len(rems)-i)
				break
			}
			if i > 0 {
				per.WriteByte(' ')
			}
			fmt.Fprintf(&per, "p%d=%d", x.p, x.n)
		}
		eta := "unknown"
		if rate > 0 {
			d := time.Duration(float64(total) / rate * float64(time.Second))
			if d < 10*time.Second {
				d = d.Round(100 * time.Millisecond)
			} else {
				d = d.Round(time.Second)
			}
			eta = d.String()
		}
		r.cfg.Logger.Info("readmodel: catching up", "projection", r.cfg.Name,
			"events_per_s", int64(rate), "handled", n, "remaining", total, "remaining_by_partition", per.String(), "eta", eta)
	}
}
