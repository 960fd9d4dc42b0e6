// Package shop is the projection of esmill's end-to-end test: per
// account, the number of deposits and their sum, in PostgreSQL. Its
// handler can be built broken (deposits of BadAmount fail, so they are
// parked) or fixed, as a deployment would fix it.
package shop

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/postgres"
	"github.com/esmill/esmill/sierradb"
)

// Category is the accounts' category.
const Category = "acct"

// Projection is the projection's name.
const Projection = "balances"

// BadAmount is the deposit the broken handler cannot apply.
const BadAmount = 13

// Deposited is the accounts' event.
type Deposited struct {
	Amount int64 `cbor:"amount"`
}

func (Deposited) EventName() string { return "Deposited" }

// Accounts is the entity type.
var Accounts = aggregate.MustDefine[struct{}, string](Category, aggregate.On(func(*struct{}, Deposited) {}))

// Table is the read model's table for a table prefix.
func Table(prefix string) string { return prefix + "balances" }

// Schema is the read model's table definition.
func Schema(prefix string) string {
	return `CREATE TABLE IF NOT EXISTS ` + Table(prefix) + ` (id text PRIMARY KEY, n int8 NOT NULL, total int8 NOT NULL)`
}

// Config is the projection's configuration on store. A broken handler
// fails on deposits of BadAmount to accounts whose id ends in broken
// (those of one test run: a server may hold other runs' accounts); with
// broken empty the handler is fixed.
func Config(client *sierradb.Client, store *postgres.Store, prefix string, broken string) readmodel.Config[pgx.Tx] {
	table := Table(prefix)
	return readmodel.Config[pgx.Tx]{
		Name: Projection, Client: client, Store: store, MaxAttempts: 1,
		Handlers: []readmodel.Handler[pgx.Tx]{
			readmodel.On(Accounts, func(ctx context.Context, tx pgx.Tx, id string, e Deposited, _ readmodel.Meta) error {
				if broken != "" && strings.HasSuffix(id, broken) && e.Amount == BadAmount {
					return esmill.MarkPoison(fmt.Errorf("shop: cannot apply a deposit of %d", e.Amount))
				}
				_, err := tx.Exec(ctx, `INSERT INTO `+table+` (id, n, total) VALUES ($1, 1, $2)
					ON CONFLICT (id) DO UPDATE SET n = `+table+`.n + 1, total = `+table+`.total + $2`, id, e.Amount)
				return err
			}),
		},
	}
}

// Drop empties the read model, for a reset.
func Drop(prefix string) func(ctx context.Context, tx pgx.Tx) error {
	return func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM `+Table(prefix))
		return err
	}
}

// Row is one account of the read model.
type Row struct{ N, Total int64 }

// Read returns the read model.
func Read(ctx context.Context, db interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, prefix string) (map[string]Row, error) {
	rows, err := db.Query(ctx, `SELECT id, n, total FROM `+Table(prefix))
	if err != nil {
		return nil, err
	}
	out := make(map[string]Row)
	var id string
	var r Row
	_, err = pgx.ForEachRow(rows, []any{&id, &r.N, &r.Total}, func() error {
		out[id] = r
		return nil
	})
	if err != nil {
		return nil, errors.Join(errors.New("shop: read the model"), err)
	}
	return out, nil
}
