package esadmin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/esadmin"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/postgres"
	"github.com/esmill/esmill/sierradb"
)

// DecodeEvent reads an event as kameo_es writes it: a CBOR payload in
// serde's externally tagged layout and the CBOR metadata envelope.
func ExampleDecodeEvent() {
	payload, err := codec.EncodePayload(codec.CBOR, "MoneyDeposited", struct {
		Amount int64 `cbor:"amount"`
	}{100})
	if err != nil {
		log.Fatal(err)
	}
	meta, err := codec.EncodeMetadata(codec.Metadata{
		Command:     "Deposit",
		Causation:   &codec.Causation{EventID: uuid.MustParse("0190f0c2-0000-7000-8000-000000000001"), StreamID: "transfer-9", StreamVersion: 2},
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	})
	if err != nil {
		log.Fatal(err)
	}
	ev := esadmin.DecodeEvent(sierradb.Event{StreamID: "account-alice", StreamVersion: 3, Name: "MoneyDeposited",
		PartitionID: 7, PartitionSequence: 42, Payload: payload, Metadata: meta})
	b, _ := json.Marshal(ev.Payload)
	fmt.Println(ev.PayloadFormat, string(b))
	fmt.Println(ev.Metadata.Command, ev.Metadata.Causation.StreamID, ev.Metadata.Causation.StreamVersion, ev.Metadata.TraceID)
	// Output:
	// cbor {"MoneyDeposited":{"amount":100}}
	// Deposit transfer-9 2 4bf92f3577b34da6a3ce929d0e0e4736
}

// A service's own admin program: the esmill commands with its projection
// registered, so that parked events can be replayed through its handlers
// and the projection rebuilt. It connects as the flags and environment
// variables say (ESMILL_SIERRADB, ESMILL_POSTGRES, ...).
func ExampleApp() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv(esadmin.EnvPostgres))
	if err != nil {
		log.Fatal(err)
	}
	store, err := postgres.New(ctx, pool, postgres.Config{})
	if err != nil {
		log.Fatal(err)
	}
	balances := readmodel.Config[pgx.Tx]{Name: "balances", Store: store, Handlers: balanceHandlers}
	drop := func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `TRUNCATE balances`)
		return err
	}
	app := &esadmin.App{Name: "bank-admin", Targets: []esadmin.Target{esadmin.Projection(balances, drop)}}
	code := app.Main()
	pool.Close()
	os.Exit(code)
}

// balanceHandlers stands for a projection's handlers.
var balanceHandlers = []readmodel.Handler[pgx.Tx]{
	readmodel.OnOther(func(context.Context, pgx.Tx, sierradb.Event, readmodel.Meta) error { return nil }),
}
