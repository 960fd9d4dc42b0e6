package embedded_test

import (
	"fmt"
	"net"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// A server on a free port, used over the wire.
func ExampleRun() {
	srv, err := embedded.Run()
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	r, w := resp3.NewReader(conn), resp3.NewWriter(conn)
	do := func(args ...string) resp3.Value {
		w.WriteCommand(args...)
		if err := w.Flush(); err != nil {
			panic(err)
		}
		v, err := r.ReadValue()
		if err != nil {
			panic(err)
		}
		return v
	}

	fmt.Println(do("PING"))
	reply := do("EAPPEND", "user-123", "UserCreated", "EXPECTED_VERSION", "empty", "PAYLOAD", `{"name":"Ada"}`)
	version, _ := reply.MapGet("stream_version")
	partition, _ := reply.MapGet("partition_id")
	fmt.Println("version", version, "partition", partition)
	fmt.Println(do("EAPPEND", "user-123", "UserCreated", "EXPECTED_VERSION", "empty"))
	fmt.Println("latest version", do("ESVER", "user-123"))
	// Output:
	// "PONG"
	// version 0 partition 21
	// ERR("WRONGVER current stream version is 0 but expected empty for partition key 7e124fe8-fe28-5398-bb95-53973100148f and stream id user-123")
	// latest version 0
}

// Seeding and inspecting the store without a client.
func ExampleServer_AppendMulti() {
	srv, err := embedded.Start(embedded.Config{
		Now: func() time.Time { return time.UnixMilli(1_700_000_000_000) },
	})
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	key := uuid.MustParse("550e8400-e29b-41d4-a716-446655440000")
	res, err := srv.AppendMulti(key,
		sierradb.NewEvent{StreamID: "order-1", Name: "OrderPlaced", ExpectedVersion: sierradb.ExpectEmpty},
		sierradb.NewEvent{StreamID: "order-1", Name: "OrderPaid", ExpectedVersion: sierradb.ExpectVersion(0)},
	)
	if err != nil {
		panic(err)
	}
	fmt.Println("partition", res.PartitionID, "sequences", res.FirstPartitionSequence, "to", res.LastPartitionSequence)
	for _, e := range srv.StreamWithKey(key, "order-1") {
		fmt.Println(e.StreamVersion, e.Name, e.Timestamp.UnixMilli())
	}
	// Output:
	// partition 25 sequences 0 to 1
	// 0 OrderPlaced 1700000000000
	// 1 OrderPaid 1700000000000
}
