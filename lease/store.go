package lease

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Store keeps the membership and the partition leases of groups. Stores
// are shared by every instance of a group, usually across processes; each
// call is atomic on its own. Expiry times are kept on the store's clock
// where the store has one (Redis, PostgreSQL), so that instances whose
// clocks disagree still agree on who holds what.
//
// The contract, checked for every store by package leasetest:
//   - a partition is granted to at most one instance at a time: to an
//     instance that asks while it is free, expired, or already its own;
//   - a grant to an instance that did not hold the partition carries a
//     token larger than every earlier token of that partition;
//   - renewing one's own lease keeps its token;
//   - membership lasts TTL after the last heartbeat.
type Store interface {
	// Heartbeat records the instance as a live member of the group until
	// TTL from now and returns the group's live members. A group has one
	// partition count: the heartbeat fails with a [*PartitionCountError]
	// when live members of the group use another.
	Heartbeat(ctx context.Context, req HeartbeatRequest) (Membership, error)
	// Acquire grants or renews, for TTL from now, the listed partitions
	// that are free, expired or already held by the instance, and returns
	// the grants in the order asked. Partitions held by another instance
	// are left out.
	Acquire(ctx context.Context, req AcquireRequest) ([]Grant, error)
	// Release gives up the instance's leases on the listed partitions.
	// Leases held by other instances are left alone.
	Release(ctx context.Context, group, instance string, partitions []int) error
	// Leave removes the instance from the group's members.
	Leave(ctx context.Context, group, instance string) error
}

// GroupReader is implemented by stores that can tell, without joining, how
// many partitions a group's live members use (RedisStore and MemoryStore
// do). Senders use it to check that they spread work over the same
// partitions as the group that consumes it (package cqrs: a command bus
// given the group fails loudly on a mismatch).
type GroupReader interface {
	// GroupPartitions returns the partition count of the group's live
	// members, and false when the group has no live member.
	GroupPartitions(ctx context.Context, group string) (partitions int, live bool, err error)
}

// HeartbeatRequest is the argument of [Store.Heartbeat].
type HeartbeatRequest struct {
	Group      string
	Instance   string
	Partitions int
	TTL        time.Duration
}

// Membership is a group's live members, sorted, and its partition count.
type Membership struct {
	Members    []string
	Partitions int
}

// AcquireRequest is the argument of [Store.Acquire].
type AcquireRequest struct {
	Group      string
	Instance   string
	Partitions []int
	TTL        time.Duration
}

// Grant is a lease on one partition. Token is its fencing token: it grows
// with every new holder of the partition.
type Grant struct {
	Partition int
	Token     uint64
}

// ErrPartitionCount is matched by a [*PartitionCountError].
var ErrPartitionCount = errors.New("lease: partition count differs from the group's")

// PartitionCountError reports an instance that joins a group with another
// partition count than the group's live members use.
type PartitionCountError struct {
	Group string
	// Group's count, and the instance's.
	Have, Want int
}

func (e *PartitionCountError) Error() string {
	return fmt.Sprintf("lease: group %q runs with %d partitions, this instance is configured with %d: "+
		"give every instance (and every sender) of the group the same partition count", e.Group, e.Have, e.Want)
}

func (e *PartitionCountError) Is(target error) bool { return target == ErrPartitionCount }

// ErrInvalidName is matched by errors about group or instance names.
var ErrInvalidName = errors.New("lease: invalid name")

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,199}$`)

// ValidateName checks a group or instance name: 1 to 200 bytes of ASCII
// letters, digits and "_.:@/-", starting with a letter or digit.
func ValidateName(kind, name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("lease: %s name %q must be 1 to 200 of [A-Za-z0-9_.:@/-], starting with a letter or digit: %w", kind, name, ErrInvalidName)
	}
	return nil
}

func validateRequest(group, instance string, ttl time.Duration) error {
	var errs []error
	if err := ValidateName("group", group); err != nil {
		errs = append(errs, err)
	}
	if err := ValidateName("instance", instance); err != nil {
		errs = append(errs, err)
	}
	if ttl < time.Millisecond {
		errs = append(errs, fmt.Errorf("lease: TTL %s is below 1ms", ttl))
	}
	return errors.Join(errs...)
}

// Validate checks the request's group and instance names and its TTL, for
// [Store] implementations outside this package.
func (r HeartbeatRequest) Validate() error {
	errs := []error{validateRequest(r.Group, r.Instance, r.TTL)}
	if r.Partitions <= 0 || r.Partitions > 1<<16 {
		errs = append(errs, fmt.Errorf("lease: partition count %d must be 1 to 65536", r.Partitions))
	}
	return errors.Join(errs...)
}

// Validate checks the request's group and instance names, its TTL and its
// partitions, for [Store] implementations outside this package.
func (r AcquireRequest) Validate() error {
	errs := []error{validateRequest(r.Group, r.Instance, r.TTL)}
	for _, p := range r.Partitions {
		if p < 0 || p >= 1<<16 {
			errs = append(errs, fmt.Errorf("lease: partition %d must be 0 to 65535", p))
			break
		}
	}
	return errors.Join(errs...)
}
