package postgres_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/postgres"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

type Opened struct {
	Title string `cbor:"title"`
}

func (Opened) EventName() string { return "Opened" }

var Tickets = aggregate.MustDefine[struct{}, string]("ticket", aggregate.On(func(*struct{}, Opened) {}))

// A projection into PostgreSQL: the handler writes through the batch's
// pgx.Tx, the transaction that also moves the projection's checkpoint.
// Set POSTGRES_DSN to run it (go test runs it against a PostgreSQL it
// starts: TestExample).
func Example() {
	ctx := context.Background()
	srv, err := embedded.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	for i, title := range []string{"printer on fire", "coffee machine empty"} {
		name, payload, _ := Tickets.EncodeEvent(Opened{Title: title})
		_, err := client.Append(ctx, sierradb.NewEvent{StreamID: fmt.Sprintf("ticket-%d", i+1), Name: name,
			Payload: payload, ExpectedVersion: sierradb.ExpectEmpty})
		if err != nil {
			log.Fatal(err)
		}
	}

	pool, err := pgxpool.New(ctx, os.Getenv("POSTGRES_DSN"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS tickets (id text PRIMARY KEY, title text NOT NULL)`); err != nil {
		log.Fatal(err)
	}
	store, err := postgres.New(ctx, pool, postgres.Config{})
	if err != nil {
		log.Fatal(err)
	}
	r, err := readmodel.New(readmodel.Config[pgx.Tx]{
		Name: "tickets", Client: client, Store: store,
		Handlers: []readmodel.Handler[pgx.Tx]{
			readmodel.On(Tickets, func(ctx context.Context, tx pgx.Tx, id string, e Opened, _ readmodel.Meta) error {
				_, err := tx.Exec(ctx, `INSERT INTO tickets (id, title) VALUES ($1, $2)`, id, e.Title)
				return err
			}),
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Start(); err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	if err := r.Sync(ctx); err != nil {
		log.Fatal(err)
	}
	rows, err := pool.Query(ctx, `SELECT id, title FROM tickets ORDER BY id`)
	if err != nil {
		log.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, title string
		if err := rows.Scan(&id, &title); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("ticket %s: %s\n", id, title)
	}
}

// TestExample runs Example against a real PostgreSQL, in a schema of its
// own, and checks what it wrote.
func TestExample(t *testing.T) {
	pool, schema := newSchema(t)
	dsn := testservice.RequirePostgres(t)
	switch {
	case !strings.Contains(dsn, "://"):
		dsn += " search_path=" + schema // key=value form
	case strings.Contains(dsn, "?"):
		dsn += "&search_path=" + schema
	default:
		dsn += "?search_path=" + schema
	}
	t.Setenv("POSTGRES_DSN", dsn)
	Example()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM tickets WHERE title IN ('printer on fire', 'coffee machine empty')`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("the example projected %d of 2 tickets", n)
	}
}
