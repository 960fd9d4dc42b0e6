package resp3

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// ValueSize is the memory one decoded [Value] takes, the unit a frame
// budget charges for every element of an aggregate.
const ValueSize = int(unsafe.Sizeof(Value{}))

// sharedChunk is the granularity of reservations from a shared [Budget], so
// that a frame does not touch the shared counter for every element.
const sharedChunk = 64 << 10

// ErrFrameBudget is matched by every [*BudgetError].
var ErrFrameBudget = errors.New("resp3: frame memory budget exceeded")

// BudgetError reports a frame whose decoded memory went beyond
// Limits.MaxFrameBytes (Shared false) or beyond what the shared [Budget]
// had left (Shared true). The reader stops decoding at that point, so no
// more than the budget was ever allocated.
type BudgetError struct {
	Limit  int64 // the budget that was exceeded, in bytes
	Shared bool  // the shared budget, not the per-frame one
}

func (e *BudgetError) Error() string {
	if e.Shared {
		return fmt.Sprintf("resp3: frame memory budget exceeded: the %d bytes shared by all connections are in use", e.Limit)
	}
	return fmt.Sprintf("resp3: frame memory budget exceeded: a frame may take at most %d bytes once decoded", e.Limit)
}

// Is reports whether target is [ErrFrameBudget].
func (e *BudgetError) Is(target error) bool { return target == ErrFrameBudget }

// Budget is decoded-frame memory shared by several [Reader]s, for example
// every connection of a server: the memory of a frame beyond
// Limits.SharedFree bytes is reserved from it while the frame is decoded
// and held until the reader's next ReadValue or [Reader.Release]. It is safe
// for concurrent use.
type Budget struct {
	max  int64
	used atomic.Int64
}

// NewBudget returns a budget of max bytes.
func NewBudget(max int64) *Budget { return &Budget{max: max} }

// Max returns the size of the budget in bytes.
func (b *Budget) Max() int64 { return b.max }

// Used returns the bytes reserved now.
func (b *Budget) Used() int64 { return b.used.Load() }

func (b *Budget) reserve(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (b *Budget) release(n int64) { b.used.Add(-n) }

// charge accounts n more bytes of decoded memory to the current frame,
// before they are allocated.
func (r *Reader) charge(n int) error {
	r.used += int64(n)
	if m := r.limits.MaxFrameBytes; m > 0 && r.used > int64(m) {
		return &BudgetError{Limit: int64(m)}
	}
	s := r.limits.Shared
	if s == nil {
		return nil
	}
	need := r.used - int64(r.limits.SharedFree) - r.reserved
	if need <= 0 {
		return nil
	}
	chunk := max(need, sharedChunk)
	if !s.reserve(chunk) {
		return &BudgetError{Limit: s.max, Shared: true}
	}
	r.reserved += chunk
	return nil
}

// Release gives back what the last frame reserved from the shared [Budget].
// ReadValue does it by itself before it reads the next frame; call Release
// when a reader is done, so that a closed connection holds nothing.
func (r *Reader) Release() {
	if r.reserved > 0 {
		r.limits.Shared.release(r.reserved)
		r.reserved = 0
	}
	r.used = 0
}

// FrameBytes returns the decoded memory charged to the last frame read.
func (r *Reader) FrameBytes() int64 { return r.used }
