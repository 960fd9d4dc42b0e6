package conformance

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// Implementation names the server under test, so that known differences
// are checked against the right side.
type Implementation string

const (
	// Real is SierraDB itself, version 0.3.1.
	Real Implementation = "sierradb"
	// Embedded is esmill's sierradb/embedded server.
	Embedded Implementation = "embedded"
)

// Role says which node of a SierraDB cluster Addr is, for the cluster
// target; the zero value is a server on its own.
type Role string

const (
	// Alone is a server that is not part of a cluster.
	Alone Role = ""
	// Coordinator is a node of a cluster that coordinates every partition
	// (on 3 nodes with RF 3, the node running longest): the node esmill's
	// cluster-aware client sends everything to. Every case runs as on a
	// server alone.
	Coordinator Role = "coordinator"
	// Replica is a node of a cluster that holds every partition but
	// coordinates none: it forwards appends to the coordinator. The cases
	// whose behaviour differs there are named known differences.
	Replica Role = "replica"
)

// Config says what to test.
type Config struct {
	// Addr is the server's host:port. Required.
	Addr string
	// Server is the implementation under test. Required.
	Server Implementation
	// PartitionCount is the partition count the server was started with.
	// Default: 32.
	PartitionCount uint16
	// BucketCount is the real server's storage bucket count, which scopes
	// its stream/partition-key binding. Default: 4.
	BucketCount uint16
	// Role is which node of a cluster Addr is. Default: Alone. Only with
	// Server Real.
	Role Role
}

// Run runs the whole suite against cfg.Addr as subtests of t.
func Run(t *testing.T, cfg Config) {
	if cfg.Addr == "" || (cfg.Server != Real && cfg.Server != Embedded) {
		t.Fatalf("conformance: Config needs Addr and Server (Real or Embedded), got %+v", cfg)
	}
	if cfg.Role != Alone && (cfg.Server != Real || (cfg.Role != Coordinator && cfg.Role != Replica)) {
		t.Fatalf("conformance: Role %q needs Server Real and is Coordinator or Replica", cfg.Role)
	}
	if cfg.PartitionCount == 0 {
		cfg.PartitionCount = sierradb.DefaultPartitionCount
	}
	if cfg.BucketCount == 0 {
		cfg.BucketCount = 4
	}
	s := &suite{cfg: cfg}
	where := ""
	if cfg.Role != Alone {
		where = " (a cluster's " + string(cfg.Role) + ")"
	}
	t.Logf("conformance suite against %s at %s%s", cfg.Server, cfg.Addr, where)
	for _, c := range allCases() {
		if cfg.Role == Replica {
			if why, ok := replicaOnly[c.name]; ok {
				t.Run(c.name, func(t *testing.T) { s.onReplica(t, why) })
				continue
			}
		}
		t.Run(c.name, func(t *testing.T) { c.run(t, s) })
	}
	if cfg.Role == Replica {
		for _, c := range replicaCases() {
			t.Run(c.name, func(t *testing.T) { c.run(t, s) })
		}
		t.Logf("KNOWN DIFFERENCE %q: %d error replies of this run came forwarded as REMOTEOPFAILED and were compared as the coordinator's",
			"forwarded-errors", s.forwarded.Load())
	}
}

type testCase struct {
	name string
	run  func(t *testing.T, s *suite)
}

// allCases lists every case in the order they run. The LATEST re-broadcast
// case runs first, while the server has had no live subscriber.
func allCases() []testCase {
	return []testCase{
		{"SubscribeFromLatest", testSubscribeFromLatest},
		{"Framing", testFraming},
		{"Ping", testPing},
		{"Hello", testHello},
		{"Info", testInfo},
		{"ArgumentForms", testArgumentForms},
		{"ArgumentTypes", testArgumentTypes},
		{"ParseErrors", testParseErrors},
		{"AppendReply", testAppendReply},
		{"ExpectedVersions", testExpectedVersions},
		{"StrictVersioning", testStrictVersioning},
		{"AppendOptions", testAppendOptions},
		{"EventIDs", testEventIDs},
		{"EventIDNil", testEventIDNil},
		{"StreamIDRules", testStreamIDRules},
		{"MultiAppend", testMultiAppend},
		{"MultiAppendAtomicity", testMultiAppendAtomicity},
		{"PartitionMath", testPartitionMath},
		{"PartitionKeyBinding", testPartitionKeyBinding},
		{"Get", testGet},
		{"Scan", testScan},
		{"ScanHasMore", testScanHasMore},
		{"StreamVersion", testStreamVersion},
		{"PartitionScan", testPartitionScan},
		{"PartitionScanEndBound", testPartitionScanEndBound},
		{"PartitionSequence", testPartitionSequence},
		{"Visibility", testVisibility},
		{"SubscribePartition", testSubscribePartition},
		{"SubscribeAll", testSubscribeAll},
		{"SubscriptionWindow", testSubscriptionWindow},
		{"Ack", testAck},
		{"SubscribeResume", testSubscribeResume},
		{"SubscriptionConnection", testSubscriptionConnection},
		{"SubscribeStream", testSubscribeStream},
		{"SubscribeStreamFrom", testSubscribeStreamFrom},
		{"SubscribeErrors", testSubscribeErrors},
		{"SubscriptionAheadOfHead", testSubscriptionAheadOfHead},
	}
}

type suite struct {
	cfg Config
	// forwarded counts the error replies a Replica forwarded, which the
	// connections compare as the coordinator's (see conn.reply).
	forwarded atomic.Int64
}

func (s *suite) conn(t testing.TB) *conn {
	c := dial(t, s.cfg.Addr)
	if s.cfg.Role == Replica {
		c.forwarded = &s.forwarded
	}
	return c
}

// known holds each implementation to its own behaviour where they
// deliberately differ, and names the difference in the test output.
func (s *suite) known(t *testing.T, name, reason string, real, embedded func(t *testing.T)) {
	t.Helper()
	t.Logf("KNOWN DIFFERENCE %q: %s", name, reason)
	if s.cfg.Server == Real {
		real(t)
	} else {
		embedded(t)
	}
}

func (s *suite) partition(key uuid.UUID) uint16 {
	return sierradb.PartitionID(key, s.cfg.PartitionCount)
}

// name returns a stream id no other run uses.
func name(category string) string {
	var b [6]byte
	rand.Read(b[:])
	return category + "-" + hex.EncodeToString(b[:])
}

// keyIn returns a random partition key that maps to partition p.
func (s *suite) keyIn(p uint16) uuid.UUID {
	for {
		k := uuid.New()
		if s.partition(k) == p {
			return k
		}
	}
}

// appendOK appends one event with an exact expectation and returns the reply.
func appendOK(t testing.TB, c *conn, stream string, expected string, extra ...string) resp3.Value {
	t.Helper()
	args := append([]string{"EAPPEND", stream, "Ev", "EXPECTED_VERSION", expected}, extra...)
	v := c.do(args...)
	if v.Type != resp3.Map {
		t.Fatalf("EAPPEND %v: %s", args[1:], v)
	}
	return v
}

// appendMany appends n events to stream (under key) in one EMAPPEND,
// starting after version `after` (-1: empty).
func appendMany(t testing.TB, c *conn, key uuid.UUID, stream string, after int64, n int) resp3.Value {
	t.Helper()
	args := []string{"EMAPPEND", key.String()}
	for i := range n {
		ev := "empty"
		if v := after + int64(i); v >= 0 {
			ev = strconv.FormatInt(v, 10)
		}
		args = append(args, stream, "Ev", "EXPECTED_VERSION", ev, "PAYLOAD", strconv.FormatInt(after+int64(i)+1, 10))
	}
	v := c.do(args...)
	if v.Type != resp3.Map {
		t.Fatalf("EMAPPEND: %s", v)
	}
	return v
}

// visible waits until a stream serves version v: SierraDB confirms events
// asynchronously, so a read right after an append's reply may miss it.
func visible(t testing.TB, c *conn, stream string, key uuid.UUID, v int64) {
	t.Helper()
	deadline := time.Now().Add(frameTimeout)
	for {
		r := c.do("ESVER", stream, "PARTITION_KEY", key.String())
		if r.Type == resp3.Integer && r.Int >= v {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s never reached version %d (last %s)", stream, v, r)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func str(v resp3.Value) string { return string(v.Str) }

func mustUUID(t testing.TB, what string, v resp3.Value) uuid.UUID {
	t.Helper()
	id, err := uuid.ParseBytes(v.Str)
	if err != nil {
		t.Fatalf("%s %s is not a UUID: %v", what, v, err)
	}
	return id
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

var _ = fmt.Sprint

func streamKey(stream string) uuid.UUID { return sierradb.StreamPartitionKey(stream) }

// keyInSameBucket returns a random key whose partition differs from key's
// but lies in the same storage bucket of the real server.
func (s *suite) keyInSameBucket(key uuid.UUID) uuid.UUID {
	p := s.partition(key)
	for {
		k := uuid.New()
		if q := s.partition(k); q != p && q%s.cfg.BucketCount == p%s.cfg.BucketCount {
			return k
		}
	}
}

// keyInOtherBucket returns a random key in another storage bucket than key.
func (s *suite) keyInOtherBucket(key uuid.UUID) uuid.UUID {
	p := s.partition(key)
	for {
		k := uuid.New()
		if s.partition(k)%s.cfg.BucketCount != p%s.cfg.BucketCount {
			return k
		}
	}
}
