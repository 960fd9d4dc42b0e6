package sierradbcontainer_test

import (
	"context"
	"fmt"
	"log"

	"github.com/testcontainers/testcontainers-go"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/sierradbcontainer"
)

// Start the official image with 8 partitions, append an event and read it
// back. (Not run by go test: it needs Docker and the image.)
func Example() {
	ctx := context.Background()
	ctr, err := sierradbcontainer.Run(ctx, sierradbcontainer.DefaultImage, sierradbcontainer.WithPartitions(8))
	defer func() {
		if err := testcontainers.TerminateContainer(ctr); err != nil {
			log.Print(err)
		}
	}()
	if err != nil {
		log.Fatal(err)
	}
	client, err := ctr.Client(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Append(ctx, sierradb.NewEvent{StreamID: "order-1", Name: "Placed", ExpectedVersion: sierradb.ExpectEmpty}); err != nil {
		log.Fatal(err)
	}
	v, err := client.StreamVersion(ctx, "order-1")
	fmt.Println(v, err)
}
