// This program must not compile: a partition scan takes no partition key,
// and TestMisplacedOptionDoesNotCompile checks that the compiler says so.
package main

import (
	"context"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
)

func main() {
	client, _ := sierradb.New(sierradb.Config{})
	client.PartitionScan(context.Background(), 0, 0, sierradb.End, sierradb.WithPartitionKey(uuid.New()))
}
