// Command testadmin is the admin program of esmill's end-to-end test: the
// esmill commands with the shop projection registered, its handler fixed,
// as a service would embed them (package esadmin).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esmill/esmill/cmd/esmill/internal/shop"
	"github.com/esmill/esmill/esadmin"
	"github.com/esmill/esmill/readmodel/postgres"
)

func main() {
	ctx := context.Background()
	prefix := os.Getenv(esadmin.EnvTablePrefix)
	pool, err := pgxpool.New(ctx, os.Getenv(esadmin.EnvPostgres))
	if err != nil {
		fmt.Fprintln(os.Stderr, "testadmin:", err)
		os.Exit(1)
	}
	store, err := postgres.New(ctx, pool, postgres.Config{TablePrefix: prefix})
	if err != nil {
		fmt.Fprintln(os.Stderr, "testadmin:", err)
		os.Exit(1)
	}
	app := &esadmin.App{Name: "testadmin", Targets: []esadmin.Target{
		esadmin.Projection(shop.Config(nil, store, prefix, ""), shop.Drop(prefix)),
	}}
	code := app.Main()
	pool.Close()
	os.Exit(code)
}
