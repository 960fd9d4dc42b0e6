// Package switcher is the blue/green pointer (readmodel.Switcher) of the
// stores that keep it in a table: the checks and errors around one query
// each way.
package switcher

import (
	"context"
	"errors"
	"fmt"

	"github.com/esmill/esmill/readmodel"
)

// Set points name at projection through set, after checking the
// projection's name. store prefixes the error ("sqlite", "postgres").
func Set(ctx context.Context, store, name, projection string, set func(ctx context.Context, name, projection string) error) error {
	if err := readmodel.ValidateName(projection); err != nil {
		return err
	}
	if err := set(ctx, name, projection); err != nil {
		return fmt.Errorf("%s: set active %q: %w", store, name, err)
	}
	return nil
}

// Get returns the projection name points at through get, whose noRows
// error means there is none: readmodel.ErrNoActive.
func Get(ctx context.Context, store, name string, noRows error, get func(ctx context.Context, name string) (string, error)) (string, error) {
	p, err := get(ctx, name)
	if errors.Is(err, noRows) {
		return "", readmodel.ErrNoActive
	}
	if err != nil {
		return "", fmt.Errorf("%s: active %q: %w", store, name, err)
	}
	return p, nil
}
