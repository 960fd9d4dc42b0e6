// Package wholemodel is what the memory and file stores share: both keep a
// projection's whole read model as one value, which a transaction copies
// and its commit replaces, next to the projection's checkpoints and parked
// events.
package wholemodel

import (
	"cmp"
	"errors"
	"maps"
	"slices"

	"github.com/esmill/esmill/readmodel"
)

// ErrDone: the transaction was already committed or rolled back.
var ErrDone = errors.New("readmodel: the transaction was already committed or rolled back; begin a new one")

// Committed is a projection's committed checkpoints and parked events.
// Gen counts commits: a transaction commits only if no other one committed
// since it began, because it replaces the whole model.
type Committed struct {
	Checkpoints map[uint16]uint64
	Parked      map[readmodel.Position]readmodel.ParkedEvent
	// Server is the identity of the SierraDB server the checkpoints count
	// events of, "" until recorded.
	Server string
	Gen    uint64
}

// NewCommitted returns the state of a projection that has applied nothing.
func NewCommitted() Committed {
	return Committed{Checkpoints: make(map[uint16]uint64), Parked: make(map[readmodel.Position]readmodel.ParkedEvent)}
}

// Check is the compare-and-set of a commit by a transaction that began at
// generation gen: it fails with a *readmodel.ConflictError when another
// transaction committed since, or when an advance does not start from the
// stored checkpoint.
func (c *Committed) Check(projection string, gen uint64, advances []readmodel.Advance) error {
	if c.Gen != gen {
		// Another transaction committed a model this one did not start
		// from: replacing it would lose its writes.
		a := readmodel.Advance{Prev: -1}
		if len(advances) > 0 {
			a = advances[0]
		}
		return &readmodel.ConflictError{Projection: projection, Partition: a.Partition, Expected: a.Prev,
			Detail: "another transaction committed since this one began"}
	}
	for _, a := range advances {
		cur, ok := c.Checkpoints[a.Partition]
		if (a.Prev < 0 && ok) || (a.Prev >= 0 && (!ok || int64(cur) != a.Prev)) {
			return &readmodel.ConflictError{Projection: projection, Partition: a.Partition, Expected: a.Prev}
		}
	}
	return nil
}

// Next returns the state after a commit of advances and parked events,
// leaving c as it is (the file store swaps it in only once the file is
// written).
func (c *Committed) Next(advances []readmodel.Advance, parked []readmodel.ParkedEvent) Committed {
	n := Committed{Checkpoints: maps.Clone(c.Checkpoints), Parked: maps.Clone(c.Parked), Server: c.Server, Gen: c.Gen + 1}
	for _, a := range advances {
		n.Checkpoints[a.Partition] = a.Next
	}
	for _, ev := range parked {
		n.Parked[ev.Position] = ev
	}
	return n
}

// SortedParked returns parked events in position order.
func SortedParked(m map[readmodel.Position]readmodel.ParkedEvent) []readmodel.ParkedEvent {
	out := slices.Collect(maps.Values(m))
	slices.SortFunc(out, func(a, b readmodel.ParkedEvent) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Sequence, b.Sequence))
	})
	return out
}

// Batch is a transaction's own state: its copy of the model, the events it
// parks, the generation it began at.
type Batch[M any] struct {
	Projection string
	Model      M
	Parked     []readmodel.ParkedEvent
	Gen        uint64
	done       bool
}

// Park records a poison event, to be committed with the batch.
func (b *Batch[M]) Park(ev readmodel.ParkedEvent) error {
	if b.done {
		return ErrDone
	}
	b.Parked = append(b.Parked, ev)
	return nil
}

// Finish ends the batch for its commit; ErrDone if it had ended.
func (b *Batch[M]) Finish() error {
	if b.done {
		return ErrDone
	}
	b.done = true
	return nil
}

// Rollback ends the batch. It is safe after Finish.
func (b *Batch[M]) Rollback() { b.done = true }
