package sierradb_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

// The client against an in-process server: append with an expected
// version, read the stream back, and see a version conflict.
func Example() {
	srv, err := embedded.Run() // 127.0.0.1:<free port>, in memory
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

	for i, amount := range []string{"100", "25"} {
		_, err := client.Append(ctx, sierradb.NewEvent{
			StreamID:        "account-alice",
			Name:            "Deposited",
			ExpectedVersion: sierradb.ExpectAfter(int64(i) - 1), // empty, then 0
			Payload:         []byte(amount),
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	for ev, err := range client.ScanAll(ctx, "account-alice", 0) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("v%d %s %s (partition %d)\n", ev.StreamVersion, ev.Name, ev.Payload, ev.PartitionID)
	}

	// A writer that expected an empty stream loses.
	_, err = client.Append(ctx, sierradb.NewEvent{StreamID: "account-alice", Name: "Opened", ExpectedVersion: sierradb.ExpectEmpty})
	var conflict *sierradb.WrongExpectedVersionError
	if errors.As(err, &conflict) {
		fmt.Println("conflict: stream is at version", conflict.Current)
	}
	// Output:
	// v0 Deposited 100 (partition 15)
	// v1 Deposited 25 (partition 15)
	// conflict: stream is at version 1
}

// A subscription delivers history, then live events; acknowledging each
// event keeps the server's window moving.
func ExampleClient_SubscribeStream() {
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

	client.Append(ctx, sierradb.NewEvent{StreamID: "order-7", Name: "Placed", ExpectedVersion: sierradb.ExpectEmpty})
	sub, err := client.SubscribeStream(ctx, "order-7", sierradb.StartBeginning)
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	client.Append(ctx, sierradb.NewEvent{StreamID: "order-7", Name: "Shipped", ExpectedVersion: sierradb.ExpectVersion(0)})

	for range 2 {
		ev := <-sub.Events()
		fmt.Println(ev.StreamVersion, ev.Name)
		sub.Ack(ev)
	}
	// Output:
	// 0 Placed
	// 1 Shipped
}
