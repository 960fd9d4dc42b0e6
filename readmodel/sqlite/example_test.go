package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/sqlite"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

type Opened struct {
	Title string `cbor:"title"`
}

func (Opened) EventName() string { return "Opened" }

var Tickets = aggregate.MustDefine[struct{}, string]("ticket", aggregate.On(func(*struct{}, Opened) {}))

// A projection into an SQLite table: the handler writes through the
// batch's *sql.Tx, which also moves the checkpoint.
func Example() {
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
	ctx := context.Background()
	for i, title := range []string{"printer on fire", "coffee machine empty"} {
		name, payload, _ := Tickets.EncodeEvent(Opened{Title: title})
		_, err := client.Append(ctx, sierradb.NewEvent{StreamID: fmt.Sprintf("ticket-%d", i+1), Name: name,
			Payload: payload, ExpectedVersion: sierradb.ExpectEmpty})
		if err != nil {
			log.Fatal(err)
		}
	}

	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := sqlite.OpenDB(filepath.Join(dir, "readmodel.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE tickets (id TEXT PRIMARY KEY, title TEXT)`); err != nil {
		log.Fatal(err)
	}
	store, err := sqlite.New(ctx, db, sqlite.Config{})
	if err != nil {
		log.Fatal(err)
	}
	r, err := readmodel.New(readmodel.Config[*sql.Tx]{
		Name: "tickets", Client: client, Store: store,
		Handlers: []readmodel.Handler[*sql.Tx]{
			readmodel.On(Tickets, func(ctx context.Context, tx *sql.Tx, id string, e Opened, m readmodel.Meta) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO tickets (id, title) VALUES (?, ?)`, id, e.Title)
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
	rows, err := db.Query(`SELECT id, title FROM tickets ORDER BY id`)
	if err != nil {
		log.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, title string
		rows.Scan(&id, &title)
		fmt.Println(id, title)
	}
	// Output:
	// 1 printer on fire
	// 2 coffee machine empty
}
