//go:build linux

package sierracluster

import (
	"context"
	"net"

	"github.com/esmill/esmill/internal/testservice"
)

// newForwarder listens on a free loopback port of the test's own namespace
// and forwards each connection to a node's client port, dialled from
// inside the node's namespace. Its address stays the same across restarts
// of the node, so a client can reconnect to it. It adds no interface to
// the root namespace: only its listening socket lives there.
func newForwarder(netns, target string) (*testservice.Proxy, error) {
	return testservice.NewDialProxy(func(ctx context.Context) (net.Conn, error) {
		return dialIn(ctx, netns, target)
	})
}
