package sierracluster

import (
	"slices"
	"time"
)

// LongestGap is the longest time between two of the moments in times
// (acknowledgements of a load's writes) within [from, to], counting from
// from and up to to: the time without service during a fault.
func LongestGap(times []time.Time, from, to time.Time) time.Duration {
	times = slices.Clone(times)
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	last := from
	var gap time.Duration
	for _, at := range times {
		if at.Before(from) {
			continue
		}
		if at.After(to) {
			break
		}
		gap = max(gap, at.Sub(last))
		last = at
	}
	return max(gap, to.Sub(last))
}
