package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Projections implements readmodel.Lister: the projections with
// checkpoints or parked events in the store, sorted.
func (s *Store) Projections(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT projection FROM `+s.prefix+`checkpoints UNION SELECT projection FROM `+s.prefix+`parked ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("postgres: projections: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: projections: %w", err)
	}
	return names, nil
}
