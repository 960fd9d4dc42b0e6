package sqlite

import (
	"context"
	"fmt"
)

// Projections implements readmodel.Lister: the projections with
// checkpoints or parked events in the store, sorted.
func (s *Store) Projections(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT projection FROM `+s.prefix+`checkpoints UNION SELECT projection FROM `+s.prefix+`parked ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: projections: %w", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("sqlite: projections: %w", err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: projections: %w", err)
	}
	return names, nil
}
