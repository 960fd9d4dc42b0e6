package sierradb_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
)

// The address of another RESP3 server, by mistake: the error says so.
func TestHelloAgainstRedis(t *testing.T) {
	addr := testservice.RequireRedis(t)
	c := newClient(t, addr)
	_, err := c.PartitionCount(context.Background())
	var ns *sierradb.NotSierraDBError
	if !errors.Is(err, sierradb.ErrNotSierraDB) || !errors.As(err, &ns) || ns.Addr != addr ||
		!strings.Contains(err.Error(), "is not SierraDB") || !strings.Contains(err.Error(), `server "redis"`) {
		t.Fatalf("%v", err)
	}
}
