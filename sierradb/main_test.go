package sierradb_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
)

func TestMain(m *testing.M) { os.Exit(testservice.Main(m)) }

// target is a server the client tests run against.
type target struct {
	name string
	addr func(t *testing.T) string
}

// targets are the embedded server (always) and the real SierraDB (skipped
// without a binary, required under CI=true).
var targets = []target{
	{"sierradb", func(t *testing.T) string { return testservice.RequireSierraDB(t) }},
}

// eachTarget runs f against every target.
func eachTarget(t *testing.T, f func(t *testing.T, c *sierradb.Client)) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			addr := tg.addr(t)
			f(t, newClient(t, addr))
		})
	}
}

func newClient(t *testing.T, addr string) *sierradb.Client {
	t.Helper()
	c, err := sierradb.New(sierradb.Config{Addr: addr, ReconnectMinBackoff: 10 * time.Millisecond, ReconnectMaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var uniq atomic.Int64

// streamName returns a stream id no other test uses, also across runs
// against a shared real server.
func streamName(category string) string {
	return fmt.Sprintf("%s-%d-%d", category, time.Now().UnixNano()%1e9, uniq.Add(1))
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls f until it returns nil, failing t after 10 s with the
// last error.
func eventually(t *testing.T, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitVersion waits until the server serves version v of a stream: SierraDB
// confirms events asynchronously, so a read right after an append's reply
// may not see it yet.
func waitVersion(t *testing.T, c *sierradb.Client, stream string, key uuid.UUID, v int64) {
	t.Helper()
	eventually(t, func() error {
		got, err := c.StreamVersion(context.Background(), stream, sierradb.WithPartitionKey(key))
		if err != nil || got < v {
			return fmt.Errorf("stream %s at version %d (%v), want %d", stream, got, err, v)
		}
		return nil
	})
}
