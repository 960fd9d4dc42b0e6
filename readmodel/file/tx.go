package file

import (
	"context"

	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/internal/wholemodel"
)

// Tx is a batch transaction of a file [Store], and the handle its
// handlers write through.
type Tx[M any] struct {
	s      *Store[M]
	b      wholemodel.Batch[M]
	unlock func() // releases the projection's lock; nil in Reset's drop
}

func (t *Tx[M]) release() {
	if t.unlock != nil {
		t.unlock()
	}
}

// Model returns the transaction's copy of the read model, for the handlers
// to change.
func (t *Tx[M]) Model() *M { return &t.b.Model }

// Projection returns the projection's name.
func (t *Tx[M]) Projection() string { return t.b.Projection }

// Handle implements [readmodel.Tx].
func (t *Tx[M]) Handle(readmodel.Position) *Tx[M] { return t }

// Park implements [readmodel.Tx].
func (t *Tx[M]) Park(ctx context.Context, ev readmodel.ParkedEvent) error { return t.b.Park(ev) }

// Commit implements [readmodel.Tx]: the projection's file is replaced
// atomically.
func (t *Tx[M]) Commit(ctx context.Context, advances []readmodel.Advance) error {
	if err := t.b.Finish(); err != nil {
		return err
	}
	defer t.release()
	return t.s.commit(t, advances)
}

// Rollback implements [readmodel.Tx].
func (t *Tx[M]) Rollback(ctx context.Context) error {
	t.b.Rollback()
	t.release()
	return nil
}
