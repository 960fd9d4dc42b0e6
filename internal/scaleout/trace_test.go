package scaleout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/internal/scaleout"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/memory"
	"github.com/esmill/esmill/redispart"
	"github.com/esmill/esmill/sierradb"
)

// span is a finished span as the worker process writes it.
type span struct {
	Name    string            `json:"name"`
	Kind    string            `json:"kind"`
	TraceID string            `json:"trace_id"`
	SpanID  string            `json:"span_id"`
	Parent  string            `json:"parent"`
	Remote  bool              `json:"remote_parent"`
	Attrs   map[string]string `json:"attrs"`
}

func toSpans(in tracetest.SpanStubs) []span {
	var out []span
	for _, s := range in {
		sp := span{Name: s.Name, Kind: s.SpanKind.String(), TraceID: s.SpanContext.TraceID().String(),
			SpanID: s.SpanContext.SpanID().String(), Remote: s.Parent.IsRemote(), Attrs: map[string]string{}}
		if s.Parent.IsValid() {
			sp.Parent = s.Parent.SpanID().String()
		}
		for _, a := range s.Attributes {
			sp.Attrs[string(a.Key)] = a.Value.Emit()
		}
		out = append(out, sp)
	}
	return out
}

func writeSpans(path string, spans tracetest.SpanStubs) error {
	b, err := json.Marshal(toSpans(spans))
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// One command through bus (this process) → router and executor (a worker
// process) → its event → a projection (this process) is one trace: the
// worker continues the sender's span from the message metadata, and the
// projection continues the executor's span from the stored event's
// metadata.
func TestTraceAcrossProcesses(t *testing.T) {
	redisAddr := testservice.RequireRedis(t)
	sierraAddr := testservice.RequireSierraDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := fmt.Sprintf("trace%d", time.Now().UnixNano())
	const partitions = 4
	spanFile := filepath.Join(t.TempDir(), "spans.json")
	w := startWorker(t, scaleout.WorkerConfig{RedisAddr: redisAddr, SierraAddr: sierraAddr, Namespace: run, Group: run,
		Partitions: partitions, Exclusive: true, SpanFile: spanFile})
	waitReady(t, w)

	local := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(local))
	defer tp.Shutdown(context.Background())

	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, nil)
	if err != nil {
		t.Fatal(err)
	}
	replies, err := redispart.NewSubscriber(redispart.SubscriberConfig{Client: rdb, Group: "sender", BlockTime: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer replies.Close()
	bus, err := cqrs.NewCommandBus(cqrs.BusConfig{Publisher: pub, ReplySubscriber: replies, Partitions: partitions, Namespace: run, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()

	client, err := sierradb.New(sierradb.Config{Addr: sierraAddr})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	type tx = *memory.Tx[map[string]int]
	entity := run + "-e1"
	applied := make(chan struct{}, 1)
	store := memory.New(memory.Config[map[string]int]{New: func() map[string]int { return map[string]int{} }, Clone: maps.Clone[map[string]int]})
	proj, err := readmodel.New(readmodel.Config[tx]{
		Name: run + "-steps", Client: client, Store: store, TracerProvider: tp,
		Handlers: []readmodel.Handler[tx]{readmodel.On(scaleout.Counters, func(ctx context.Context, tx tx, id string, e scaleout.Stepped, m readmodel.Meta) error {
			if id == entity {
				(*tx.Model())[id] = e.Seq
				if !trace.SpanContextFromContext(ctx).IsValid() {
					return fmt.Errorf("the handler's context carries no span")
				}
				select {
				case applied <- struct{}{}:
				default:
				}
			}
			return nil
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := proj.Start(); err != nil {
		t.Fatal(err)
	}
	defer proj.Close()

	rep, err := cqrs.For(bus, scaleout.Counters).Execute(ctx, entity, scaleout.Step{Seq: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Events) != 1 {
		t.Fatalf("reply %+v", rep)
	}
	select {
	case <-applied:
	case <-ctx.Done():
		t.Fatal("the projection never applied the event")
	}
	if err := proj.Close(); err != nil {
		t.Fatal(err)
	}
	w.Stop(30 * time.Second)
	if err := w.ExitErr(); err != nil {
		t.Fatalf("worker: %v\n%s", err, w.LogTail(20))
	}
	raw, err := os.ReadFile(spanFile)
	if err != nil {
		t.Fatal(err)
	}
	var remote []span
	if err := json.Unmarshal(raw, &remote); err != nil {
		t.Fatal(err)
	}

	mine := toSpans(local.GetSpans())
	find := func(spans []span, prefix string) span {
		t.Helper()
		var found []span
		for _, s := range spans {
			if strings.HasPrefix(s.Name, prefix) {
				found = append(found, s)
			}
		}
		if len(found) != 1 {
			t.Fatalf("%d spans named %q, want 1: %+v", len(found), prefix, spans)
		}
		return found[0]
	}
	topic := cqrs.DefaultTopic("step", cqrs.PartitionOf("step-"+entity, partitions))
	topic = run + "." + topic
	send := find(mine, "send ")
	process := find(remote, "process ")
	load := find(remote, "load")
	projected := find(mine, "process "+run+"-steps")
	// The router's span is the command's: the executor tells its outcome
	// there, without a span of its own. The command is decided on the
	// state just loaded and appended at the first attempt: the span tells
	// both, without children.
	for _, s := range remote {
		if s.Name == "decide" || s.Name == "append" || strings.HasPrefix(s.Name, "execute") {
			t.Errorf("a %q span for a command the router ran, decided on fresh state and appended at once: %+v", s.Name, s)
		}
	}

	all := []span{send, process, load, projected}
	for _, s := range all {
		if s.TraceID != send.TraceID {
			t.Errorf("span %q is in trace %s, the command's is %s", s.Name, s.TraceID, send.TraceID)
		}
	}
	parent := func(child, of span) {
		t.Helper()
		if child.Parent != of.SpanID {
			t.Errorf("span %q has parent %s, want %q (%s)", child.Name, child.Parent, of.Name, of.SpanID)
		}
	}
	if send.Parent != "" {
		t.Errorf("the send span has a parent: %s", send.Parent)
	}
	parent(process, send)
	parent(load, process)
	parent(projected, process)
	if !process.Remote || !projected.Remote {
		t.Errorf("the router's and the projection's spans do not continue a remote parent: %v, %v", process.Remote, projected.Remote)
	}
	want := []struct {
		s          span
		key, value string
	}{
		{send, "messaging.destination.name", topic},
		{send, "messaging.operation.type", "send"},
		{send, "esmill.command", "Step"},
		{process, "messaging.destination.name", topic},
		{process, "messaging.operation.type", "process"},
		{process, "messaging.message.id", send.Attrs["messaging.message.id"]},
		{process, "esmill.command", "Step"},
		{process, "esmill.outcome", "executed"},
		{process, "esmill.stream_id", "step-" + entity},
		{process, "esmill.version", "0"},
		// Not 1 only: one event, at the first attempt.
		{process, "esmill.events", ""},
		{process, "esmill.attempts", ""},
		{projected, "esmill.projection", run + "-steps"},
		{projected, "esmill.event", "Stepped"},
		{projected, "esmill.stream_id", "step-" + entity},
	}
	for _, w := range want {
		if got := w.s.Attrs[w.key]; got != w.value {
			t.Errorf("span %q: %s = %q, want %q", w.s.Name, w.key, got, w.value)
		}
	}
	if send.Kind != "producer" || process.Kind != "consumer" || projected.Kind != "consumer" || load.Kind != "internal" {
		t.Errorf("kinds: send %s, process %s, projection %s, load %s", send.Kind, process.Kind, projected.Kind, load.Kind)
	}
	t.Logf("one trace %s: %d spans in the sender's process, %d in the worker's", send.TraceID, len(mine), len(remote))
}
