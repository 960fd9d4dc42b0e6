// Package headwait waits for SierraDB partition heads (EPSEQ) to reach
// positions a consumer already holds. SierraDB 0.3.1 delivers every event
// of a multi-event append to subscriptions as soon as the first one is
// confirmed, but moves the head on one event at a time, writing its
// confirmation state to disk in between: a consumer that processed such
// events is ahead of the head for that moment, which is no divergence
// (the conformance suite's known difference "subscription-ahead-of-head").
// The Pub/Sub adapter's consumer groups and the projection runner give
// the head this wait before they report a position ahead of it as
// diverged.
package headwait

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/esmill/esmill/internal/backoff"
	"github.com/esmill/esmill/sierradb"
)

// Ahead returns, sorted, the partitions whose position in last (the last
// processed or delivered sequence; negative: none) is ahead of their head
// in heads (absent: -1, an empty partition).
func Ahead(last, heads map[uint16]int64) []uint16 {
	var out []uint16
	for _, p := range slices.Sorted(maps.Keys(last)) {
		if l := last[p]; l >= 0 && head(heads, p) < l {
			out = append(out, p)
		}
	}
	return out
}

func head(heads map[uint16]int64, p uint16) int64 {
	if h, ok := heads[p]; ok {
		return h
	}
	return -1
}

// Await reads the heads of the partitions of last that are ahead of
// heads again and again (backing off from 5ms to 100ms) until none is,
// or until wait has passed. It returns a copy of heads with the heads it
// read, so that the caller compares the positions with the latest ones
// and reports what is still ahead as diverged. It fails with ctx's error
// when ctx ends, and with the client's error when a read fails before
// wait has passed.
func Await(ctx context.Context, c *sierradb.Client, last, heads map[uint16]int64, wait time.Duration) (map[uint16]int64, error) {
	heads = maps.Clone(heads)
	if heads == nil {
		heads = map[uint16]int64{}
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	poll := backoff.Policy{Initial: 5 * time.Millisecond, Max: 100 * time.Millisecond}.Start()
	for ahead := Ahead(last, heads); len(ahead) > 0; ahead = Ahead(last, heads) {
		if poll.Wait(wctx) != nil {
			return heads, ctx.Err()
		}
		h, err := c.PartitionSequences(wctx, ahead)
		if err != nil {
			if wctx.Err() != nil {
				return heads, ctx.Err()
			}
			return nil, err
		}
		maps.Copy(heads, h)
	}
	return heads, nil
}
