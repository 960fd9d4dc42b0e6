package readmodel

import (
	"context"
	"fmt"
)

// Syncer is a running projection that can wait until it has caught up; a
// [*Runner] is one.
type Syncer interface {
	Name() string
	Sync(ctx context.Context) error
}

// SwitchWhenCaughtUp is the last step of a blue/green rebuild. It waits
// until the new projection r (for instance "balances@v2", running beside
// the serving "balances@v1" and writing its own tables, collections or
// file) has applied everything stored so far, then points the read-model
// name at it. Readers that look the name up with [Switcher.Active] move to
// the new version; the old runner can then be closed and its projection
// dropped with [Store.Reset].
//
// The recipe:
//
//  1. Start a runner for "balances@v2" whose handlers write v2's tables
//     (the handlers can derive them from [Meta.Projection]).
//  2. Call SwitchWhenCaughtUp(ctx, v2, store, "balances").
//  3. Close the "balances@v1" runner and Reset "balances@v1".
func SwitchWhenCaughtUp(ctx context.Context, r Syncer, sw Switcher, name string) error {
	if err := r.Sync(ctx); err != nil {
		return fmt.Errorf("readmodel: switch %q to %q: %w", name, r.Name(), err)
	}
	return sw.SetActive(ctx, name, r.Name())
}
