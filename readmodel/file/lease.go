package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/esmill/esmill/lease"
)

// LeaseStore keeps the membership and partition leases of lease groups
// (the instances of a projection sharing its partitions, see
// readmodel.Config.Leases) in "_leases.json" in the store's directory,
// read and replaced atomically under an exclusive lock on "_leases.lock"
// at every call.
//
// Expiry runs on the local clock of each process. A directory is shared
// only by the processes of one machine, which read one clock, so they
// agree on who holds what. It implements [lease.Store] (tested:
// TestLeaseContract).
type LeaseStore struct {
	dir    string
	noSync bool
	now    func() time.Time
}

// Leases returns the store's [lease.Store].
func (s *Store[M]) Leases() *LeaseStore {
	return &LeaseStore{dir: s.cfg.Dir, noSync: s.cfg.NoSync, now: time.Now}
}

type leaseFile struct {
	Groups map[string]*leaseGroup `json:"groups"`
}

type leaseGroup struct {
	// Members: instance → partition count and expiry (Unix ms).
	Members map[string]leaseMember `json:"members"`
	// Owners: partition → holder. A released or expired lease keeps its
	// entry, so that its token only grows.
	Owners map[string]leaseOwner `json:"owners"`
}

type leaseMember struct {
	Partitions int   `json:"partitions"`
	Expires    int64 `json:"expires"`
}

type leaseOwner struct {
	Instance string `json:"instance"`
	Expires  int64  `json:"expires"`
	Token    uint64 `json:"token"`
}

// update runs fn on the group's state under the lock and writes the
// result back if fn reports a change.
func (l *LeaseStore) update(ctx context.Context, group string, fn func(g *leaseGroup, now int64) (bool, error)) error {
	lock, err := lockFileContext(ctx, filepath.Join(l.dir, "_leases.lock"), false)
	if err != nil {
		return fmt.Errorf("file: leases: %w", err)
	}
	defer lock.Close()
	path := filepath.Join(l.dir, "_leases.json")
	f := leaseFile{Groups: make(map[string]*leaseGroup)}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("file: leases: %w", err)
	default:
		if err := json.Unmarshal(b, &f); err != nil {
			return fmt.Errorf("file: %s: %w; remove it to start the lease groups afresh", path, err)
		}
		if f.Groups == nil {
			f.Groups = make(map[string]*leaseGroup)
		}
	}
	g := f.Groups[group]
	if g == nil {
		g = &leaseGroup{}
		f.Groups[group] = g
	}
	if g.Members == nil {
		g.Members = make(map[string]leaseMember)
	}
	if g.Owners == nil {
		g.Owners = make(map[string]leaseOwner)
	}
	changed, err := fn(g, l.now().UnixMilli())
	if err != nil || !changed {
		return err
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("file: leases: %w", err)
	}
	return writeAtomic(path, out, !l.noSync)
}

// Heartbeat implements [lease.Store].
func (l *LeaseStore) Heartbeat(ctx context.Context, req lease.HeartbeatRequest) (lease.Membership, error) {
	if err := req.Validate(); err != nil {
		return lease.Membership{}, err
	}
	var ms lease.Membership
	err := l.update(ctx, req.Group, func(g *leaseGroup, now int64) (bool, error) {
		for m, v := range g.Members {
			if v.Expires <= now {
				delete(g.Members, m)
			}
		}
		for m, v := range g.Members {
			if m != req.Instance && v.Partitions != req.Partitions {
				return false, &lease.PartitionCountError{Group: req.Group, Have: v.Partitions, Want: req.Partitions}
			}
		}
		g.Members[req.Instance] = leaseMember{Partitions: req.Partitions, Expires: now + req.TTL.Milliseconds()}
		for m := range g.Members {
			ms.Members = append(ms.Members, m)
		}
		slices.Sort(ms.Members)
		ms.Partitions = req.Partitions
		return true, nil
	})
	return ms, err
}

// Acquire implements [lease.Store].
func (l *LeaseStore) Acquire(ctx context.Context, req lease.AcquireRequest) ([]lease.Grant, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if len(req.Partitions) == 0 {
		return nil, nil
	}
	var grants []lease.Grant
	err := l.update(ctx, req.Group, func(g *leaseGroup, now int64) (bool, error) {
		for _, p := range req.Partitions {
			key := strconv.Itoa(p)
			o, held := g.Owners[key]
			live := held && o.Expires > now
			if live && o.Instance != req.Instance {
				continue
			}
			if !live || o.Instance != req.Instance {
				o.Token++
			}
			o.Instance, o.Expires = req.Instance, now+req.TTL.Milliseconds()
			g.Owners[key] = o
			if !slices.ContainsFunc(grants, func(gr lease.Grant) bool { return gr.Partition == p }) {
				grants = append(grants, lease.Grant{Partition: p, Token: o.Token})
			}
		}
		return len(grants) > 0, nil
	})
	return grants, err
}

// Release implements [lease.Store]: the leases expire at once.
func (l *LeaseStore) Release(ctx context.Context, group, instance string, partitions []int) error {
	return l.update(ctx, group, func(g *leaseGroup, now int64) (bool, error) {
		changed := false
		for _, p := range partitions {
			key := strconv.Itoa(p)
			if o, ok := g.Owners[key]; ok && o.Instance == instance && o.Expires > now {
				o.Expires = 0
				g.Owners[key] = o
				changed = true
			}
		}
		return changed, nil
	})
}

// Leave implements [lease.Store].
func (l *LeaseStore) Leave(ctx context.Context, group, instance string) error {
	return l.update(ctx, group, func(g *leaseGroup, now int64) (bool, error) {
		_, ok := g.Members[instance]
		delete(g.Members, instance)
		return ok, nil
	})
}
