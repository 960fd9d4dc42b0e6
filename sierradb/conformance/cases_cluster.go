package conformance

// Cases of the cluster target: what differs when the suite talks to a
// node of a SierraDB 0.3.1 cluster that holds every partition but
// coordinates none (Role Replica). On the coordinator every case passes as
// on a server alone. The facts behind these cases are established by
// internal/sierracluster's tests (named below) and recorded in
// docs/cluster.md.

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// replicaOnly names the cases that do not hold on a replica, and why:
// they are not run there, and the log names the difference.
var replicaOnly = map[string]string{
	"SubscribeFromLatest":    subscriptionsTrail,
	"SubscribePartition":     subscriptionsTrail,
	"SubscribeResume":        subscriptionsTrail,
	"SubscriptionConnection": subscriptionsTrail,
	"SubscribeStream":        subscriptionsTrail,
	"SubscribeStreamFrom":    subscriptionsTrail,
}

const subscriptionsTrail = "replica-subscriptions: on a replica a live event arrives only when the partition's next event is " +
	"written, and after missing writes the replica serves its stale copy for good " +
	"(TestKnownDifferenceReplicaLiveTrailsByOne, TestKnownDifferenceRestartedReplicaStaysBehind); esmill's cluster " +
	"client subscribes on each partition's coordinator only"

func (s *suite) onReplica(t *testing.T, why string) {
	t.Logf("KNOWN DIFFERENCE %s", why)
}

func replicaCases() []testCase {
	return []testCase{
		{"ClusterForwardedErrors", testClusterForwardedErrors},
		{"ClusterReadAfterWrite", testClusterReadAfterWrite},
	}
}

// testClusterForwardedErrors pins how a replica returns the errors of the
// coordinator it forwarded an append to: REMOTEOPFAILED with the remote
// error's text and without its code, for a version conflict
// (TestKnownDifferenceForwardedWrongVersion) and for a storage error alike;
// and that the typed client still reports the conflict as a
// WrongExpectedVersionError.
func testClusterForwardedErrors(t *testing.T, s *suite) {
	c := dial(t, s.cfg.Addr) // raw: no translation
	stream := name("fwd")
	appendOK(t, c, stream, "empty")
	expectErrorText(t, c.do("EAPPEND", stream, "Ev", "EXPECTED_VERSION", "5"),
		forwardedPrefix+"current stream version is 0 but expected 5 for partition key "+streamKey(stream).String()+" and stream id "+stream)
	long := strings.Repeat("n", 256)
	expectErrorText(t, c.do("EAPPEND", name("fwdname"), long, "EXPECTED_VERSION", "empty"),
		forwardedPrefix+`database operation failed: OtherString("string too long: length is 256, maximum allowed is 255")`)

	client, err := sierradb.New(sierradb.Config{Addr: s.cfg.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), frameTimeout)
	defer cancel()
	_, err = client.Append(ctx, sierradb.NewEvent{StreamID: stream, Name: "Ev", ExpectedVersion: sierradb.ExpectVersion(5)})
	var wev *sierradb.WrongExpectedVersionError
	if !errors.As(err, &wev) || !wev.Parsed || wev.Current != 0 || wev.StreamID != stream {
		t.Fatalf("the client got %v (%+v), want a parsed WrongExpectedVersionError at version 0", err, wev)
	}
	t.Logf("KNOWN DIFFERENCE %q: a replica answers a conflict and a storage error found by the coordinator with %q and the remote text; "+
		"the client parses the conflict into the same WrongExpectedVersionError", "forwarded-errors", forwardedPrefix)
}

// testClusterReadAfterWrite pins that a replica's copy trails the
// coordinator's: reads on the replica right after an append acknowledged
// through it miss it (phase 1 measured 18 to 100 of 100 misses,
// TestFactsFiveNodes/ReadAfterWriteAcrossNodes; this case logs how many and
// how long until visible), so a client reads from the coordinator.
func testClusterReadAfterWrite(t *testing.T, s *suite) {
	c := s.conn(t)
	const rounds = 20
	misses := 0
	var slowest time.Duration
	for range rounds {
		stream := name("raw")
		appendOK(t, c, stream, "empty")
		start := time.Now()
		if v := c.do("ESVER", stream); v.Type != resp3.Integer || v.Int != 0 {
			misses++
		}
		visible(t, c, stream, streamKey(stream), 0)
		slowest = max(slowest, time.Since(start))
	}
	t.Logf("KNOWN DIFFERENCE %q: %d of %d reads on the replica right after an append through it missed it; the slowest became visible after %s",
		"replica-reads", misses, rounds, slowest.Round(time.Millisecond))
	if misses == 0 {
		t.Log("no read missed this time: the lag is a race, not a rule")
	}
}
