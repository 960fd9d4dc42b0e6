package sierradb_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

// TestLiveCheckResubscribesPastAHeldTail: a server that holds back a
// partition's confirmed live event (embedded.Server.HoldLive, as SierraDB
// 0.3.1 can until the partition's next write) does not stall a
// subscription whose live check is on: it resubscribes from its position
// and gets the held event once, with no duplicate before or after. The
// control, a subscription with the check off, opened before the hold on
// the same server, does not get the event until the hold ends: it shows
// that the check, not the server, delivered it. Both are run on one
// server and on a cluster of embedded nodes (the check runs per leg).
func TestLiveCheckResubscribesPastAHeldTail(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		srv := embedded.RunT(t)
		cfg := func(check time.Duration) sierradb.Config {
			return sierradb.Config{Addr: srv.Addr(), LiveCheckInterval: check}
		}
		liveCheck(t, func(uint16) *embedded.Server { return srv }, cfg)
	})
	t.Run("cluster", func(t *testing.T) {
		srvs, addrs := embeddedNodes(t, 3)
		cl := &sierradb.ClusterConfig{Nodes: addrs, ReplicationFactor: 1, Buckets: 3, ProbeInterval: 50 * time.Millisecond}
		cfg := func(check time.Duration) sierradb.Config {
			return sierradb.Config{Cluster: cl, LiveCheckInterval: check}
		}
		liveCheck(t, func(p uint16) *embedded.Server { return srvs[cl.Holders(p)[0]] }, cfg)
	})
}

// liveCheck runs the test on the server that node(p) returns for the
// stream's partition p, with clients made from cfg(LiveCheckInterval).
func liveCheck(t *testing.T, node func(p uint16) *embedded.Server, cfg func(time.Duration) sierradb.Config) {
	const every = 100 * time.Millisecond
	ctx := ctxT(t)
	open := func(check time.Duration) *sierradb.Client {
		c, err := sierradb.New(cfg(check))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c, control := open(every), open(-1)
	key := uuid.New()
	stream := streamName("held")
	p, err := c.PartitionOf(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	subscribe := func(c *sierradb.Client) *sierradb.Subscription {
		sub, err := c.SubscribePartitions(ctx, sierradb.PartitionSubscription{Partitions: []uint16{p}, Default: sierradb.StartLatest})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sub.Close() })
		return sub
	}
	sub, ctl := subscribe(c), subscribe(control)
	appendN(t, c, key, stream, 1)
	checkVersions(t, receive(t, sub, stream, 1, true), 0)
	checkVersions(t, receive(t, ctl, stream, 1, true), 0)

	srv := node(p)
	srv.HoldLive(p)
	appendN(t, c, key, stream, 1)
	checkVersions(t, receiveWithin(t, sub, stream, 1, 20*time.Second), 1)
	if n := sub.LiveResubscribes(); n < 1 {
		t.Fatalf("the held event came without a resubscription (%d): the hold did not hold", n)
	}
	// The control, with the check off, still waits: 10 check intervals.
	select {
	case ev := <-ctl.Events():
		t.Fatalf("the subscription without the live check got %s@%d while the server held it", ev.StreamID, ev.StreamVersion)
	case <-time.After(10 * every):
	}
	srv.ReleaseLive(p)
	checkVersions(t, receive(t, ctl, stream, 1, true), 1)
	if n := ctl.LiveResubscribes(); n != 0 {
		t.Fatalf("the subscription without the live check resubscribed %d times", n)
	}

	// After the resubscription: the next event once, nothing twice.
	appendN(t, c, key, stream, 1)
	checkVersions(t, receive(t, sub, stream, 1, true), 2)
	checkVersions(t, receive(t, ctl, stream, 1, true), 2)
	// Five check intervals more without a held event: nothing more comes.
	select {
	case ev := <-sub.Events():
		t.Fatalf("after the resubscription an extra event: %s@%d", ev.StreamID, ev.StreamVersion)
	case <-time.After(5 * every):
	}
}
