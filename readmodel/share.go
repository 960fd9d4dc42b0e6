package readmodel

import (
	"maps"
	"slices"
	"sync"
)

// share is which partitions a runner works on. Without Leases it is every
// partition, for good; with Leases the lease member changes it through
// Assigned and Revoked (it is the member's lease.Handler), and the
// runner's loop takes the changes between two subscriptions, when nothing
// is in flight: a revocation returns only then, so that a partition's
// lease is released only after its last batch was committed or
// abandoned.
type share struct {
	mu sync.Mutex
	// assigned is what the member says the runner holds, with tokens.
	assigned map[uint16]uint64
	// owned is what the loop works on.
	owned map[uint16]uint64
	// waiting holds the revocations that wait for the loop.
	waiting map[uint16]chan struct{}
	// revoking is closed while a revocation waits.
	revoking chan struct{}
	// signal wakes the loop after a change.
	signal chan struct{}
	// stopped is closed when the loop has ended: revocations return at
	// once.
	stopped  chan struct{}
	stopOnce sync.Once
}

func newShare() *share {
	return &share{
		assigned: make(map[uint16]uint64), owned: make(map[uint16]uint64),
		waiting: make(map[uint16]chan struct{}), revoking: make(chan struct{}),
		signal: make(chan struct{}, 1), stopped: make(chan struct{}),
	}
}

func (s *share) notify() {
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// assignAll gives the runner every partition, without leases.
func (s *share) assignAll(parts []uint16) {
	s.mu.Lock()
	for _, p := range parts {
		s.assigned[p] = 0
	}
	s.mu.Unlock()
	s.notify()
}

// Assigned implements lease.Handler.
func (s *share) Assigned(p int, token uint64) {
	s.mu.Lock()
	s.assigned[uint16(p)] = token
	s.mu.Unlock()
	s.notify()
}

// Revoked implements lease.Handler: it returns once the loop has stopped
// working on p (or has ended).
func (s *share) Revoked(p int) {
	s.mu.Lock()
	delete(s.assigned, uint16(p))
	_, working := s.owned[uint16(p)]
	select {
	case <-s.stopped:
		working = false
	default:
	}
	if !working {
		s.mu.Unlock()
		return
	}
	done := make(chan struct{})
	s.waiting[uint16(p)] = done
	if len(s.waiting) == 1 {
		close(s.revoking)
	}
	s.mu.Unlock()
	s.notify()
	select {
	case <-done:
	case <-s.stopped:
	}
}

// revokingCh returns a channel that is closed while a revocation waits
// for the loop.
func (s *share) revokingCh() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revoking
}

// take is called by the loop while nothing is in flight: it lets the
// waiting revocations return and returns the partitions to work on now,
// sorted, and those gained since the last take.
func (s *share) take() (owned []uint16, gained []uint16) {
	select {
	case <-s.signal:
	default:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.waiting) > 0 {
		for p, done := range s.waiting {
			delete(s.owned, p)
			close(done)
		}
		clear(s.waiting)
		s.revoking = make(chan struct{})
	}
	for p := range s.assigned {
		if _, ok := s.owned[p]; !ok {
			gained = append(gained, p)
		}
	}
	s.owned = maps.Clone(s.assigned)
	owned = slices.Sorted(maps.Keys(s.owned))
	slices.Sort(gained)
	return owned, gained
}

// token returns the token under which the loop works on p.
func (s *share) token(p uint16) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.owned[p]
	return t, ok
}

// isOwned reports whether the loop works on p.
func (s *share) isOwned(p uint16) bool {
	_, ok := s.token(p)
	return ok
}

// stop is called when the loop has ended.
func (s *share) stop() { s.stopOnce.Do(func() { close(s.stopped) }) }
