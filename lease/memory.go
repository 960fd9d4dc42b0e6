package lease

import (
	"context"
	"slices"
	"sync"
	"time"
)

// MemoryStore is a [Store] inside one process, for tests and for instances
// that share a process. It is safe for concurrent use.
type MemoryStore struct {
	now func() time.Time

	mu     sync.Mutex
	groups map[string]*memGroup
}

type memGroup struct {
	partitions int
	members    map[string]time.Time // instance → expiry
	owners     map[int]memLease
	tokens     map[int]uint64
}

type memLease struct {
	instance string
	expires  time.Time
}

// NewMemoryStore returns an empty store on the system clock.
func NewMemoryStore() *MemoryStore { return NewMemoryStoreWithClock(time.Now) }

// NewMemoryStoreWithClock returns an empty store on the given clock.
func NewMemoryStoreWithClock(now func() time.Time) *MemoryStore {
	return &MemoryStore{now: now, groups: make(map[string]*memGroup)}
}

func (s *MemoryStore) group(name string) *memGroup {
	g := s.groups[name]
	if g == nil {
		g = &memGroup{members: make(map[string]time.Time), owners: make(map[int]memLease), tokens: make(map[int]uint64)}
		s.groups[name] = g
	}
	return g
}

// Heartbeat implements [Store].
func (s *MemoryStore) Heartbeat(ctx context.Context, req HeartbeatRequest) (Membership, error) {
	if err := validateRequest(req.Group, req.Instance, req.TTL); err != nil {
		return Membership{}, err
	}
	if err := ctx.Err(); err != nil {
		return Membership{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	g := s.group(req.Group)
	others := 0
	for m, exp := range g.members {
		switch {
		case !exp.After(now):
			delete(g.members, m)
		case m != req.Instance:
			others++
		}
	}
	if others > 0 && g.partitions != 0 && g.partitions != req.Partitions {
		return Membership{}, &PartitionCountError{Group: req.Group, Have: g.partitions, Want: req.Partitions}
	}
	g.partitions = req.Partitions
	g.members[req.Instance] = now.Add(req.TTL)
	ms := Membership{Partitions: g.partitions}
	for m := range g.members {
		ms.Members = append(ms.Members, m)
	}
	slices.Sort(ms.Members)
	return ms, nil
}

// Acquire implements [Store].
func (s *MemoryStore) Acquire(ctx context.Context, req AcquireRequest) ([]Grant, error) {
	if err := validateRequest(req.Group, req.Instance, req.TTL); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	g := s.group(req.Group)
	var grants []Grant
	for _, p := range req.Partitions {
		l, held := g.owners[p]
		live := held && l.expires.After(now)
		if live && l.instance != req.Instance {
			continue
		}
		if !live || l.instance != req.Instance {
			g.tokens[p]++
		}
		g.owners[p] = memLease{instance: req.Instance, expires: now.Add(req.TTL)}
		grants = append(grants, Grant{Partition: p, Token: g.tokens[p]})
	}
	return grants, nil
}

// Release implements [Store].
func (s *MemoryStore) Release(ctx context.Context, group, instance string, partitions []int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.group(group)
	for _, p := range partitions {
		if l, ok := g.owners[p]; ok && l.instance == instance {
			delete(g.owners, p)
		}
	}
	return nil
}

// Leave implements [Store].
func (s *MemoryStore) Leave(ctx context.Context, group, instance string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.group(group).members, instance)
	return nil
}

// GroupPartitions implements [GroupReader].
func (s *MemoryStore) GroupPartitions(ctx context.Context, group string) (int, bool, error) {
	if err := ValidateName("group", group); err != nil {
		return 0, false, err
	}
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[group]
	if g == nil || g.partitions == 0 {
		return 0, false, nil
	}
	now := s.now()
	for _, exp := range g.members {
		if exp.After(now) {
			return g.partitions, true, nil
		}
	}
	return 0, false, nil
}

// Holder returns the live holder of a partition and its token, for tests
// and diagnostics.
func (s *MemoryStore) Holder(group string, partition int) (instance string, token uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.group(group)
	l, held := g.owners[partition]
	if !held || !l.expires.After(s.now()) {
		return "", 0, false
	}
	return l.instance, g.tokens[partition], true
}
