//go:build !unix

package cqrs_test

import "time"

// cpuTime is 0 where getrusage is missing: the benchmarks' CPU metrics
// are then 0, their throughput is unaffected.
func cpuTime() time.Duration { return 0 }
