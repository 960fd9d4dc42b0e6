package pubsub_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/pubsub"
)

// crashChildEnv makes the test binary run crashChild instead of the tests.
const crashChildEnv = "PUBSUB_CRASH_CHILD"

// fileCheckpoints is a durable CheckpointStore for the crash test: one JSON
// file per group and topic, replaced atomically (temporary file, fsync,
// rename, directory fsync) on every Save.
type fileCheckpoints struct {
	dir string
	mu  sync.Mutex
}

func (f *fileCheckpoints) path(group, topic string) string {
	return filepath.Join(f.dir, strconv.Quote(group+"|"+topic)+".json")
}

func (f *fileCheckpoints) Load(_ context.Context, group, topic string) (map[uint16]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := os.ReadFile(f.path(group, topic))
	if os.IsNotExist(err) {
		return map[uint16]uint64{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[uint16]uint64{}
	return out, json.Unmarshal(b, &out)
}

func (f *fileCheckpoints) Save(ctx context.Context, group, topic string, partition uint16, sequence uint64) error {
	cur, err := f.Load(ctx, group, topic)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	cur[partition] = sequence
	b, err := json.Marshal(cur)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(f.dir, ".cp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), f.path(group, topic)); err != nil {
		return err
	}
	d, err := os.Open(f.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// crashChild consumes a topic as consumer group "g" with the durable store
// in its directory, and records each message (event id and payload) in
// received.log, fsynced, before it acks it; it runs until killed.
func crashChild() int {
	dir, addr, topic := os.Getenv(crashChildEnv), os.Getenv("PUBSUB_CRASH_ADDR"), os.Getenv("PUBSUB_CRASH_TOPIC")
	c, err := sierradb.New(sierradb.Config{Addr: addr})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	sub, err := pubsub.NewSubscriber(pubsub.SubscriberConfig{Client: c, ConsumerGroup: "g", Checkpoints: &fileCheckpoints{dir: dir}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	out, err := os.OpenFile(filepath.Join(dir, "received.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ch, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println("consuming")
	for msg := range ch {
		if _, err := fmt.Fprintf(out, "%s %s\n", msg.Metadata.Get(esmill.MetaEventID), msg.Payload); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		if err := out.Sync(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		msg.Ack()
	}
	return 1
}

// received reads the child's record: one "event-id payload" per line.
func received(t *testing.T, dir string) [][2]string {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "received.log"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][2]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// A line cut by the kill has no newline and no payload yet: the
		// message was not acked, so it comes again.
		if id, p, ok := strings.Cut(sc.Text(), " "); ok && p != "" {
			out = append(out, [2]string{id, p})
		}
	}
	return out
}

// TestGroupCrashRestart runs a consumer group with a durable checkpoint
// store in a child process and SIGKILLs it again and again while it
// consumes, each time after it has recorded a random number of further
// messages (so the kills are spread over the run and every one falls
// while messages flow), then restarts it, until every published message
// is recorded. Nothing may be lost or reordered; a message may come again
// only because the kill fell between recording it and saving its position
// (the position is saved after every ack), so at most one per kill. The
// test prints the counts. Short mode (the load step of .ci/run) kills 4
// times instead of 8.
func TestGroupCrashRestart(t *testing.T) {
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) { groupCrashRestart(t, srv, bin) })
	}
}

func groupCrashRestart(t *testing.T, srv server, bin string) {
	addr := srv.addr(t) // one server: the embedded one is started per call
	c := newClient(t, addr)
	total, kills := 300, 8
	if testing.Short() {
		kills = 4
	}
	topic := streamName("crash")
	pub := newPublisher(t, pubsub.PublisherConfig{Client: c})
	for i := 0; i < total; i += 30 {
		msgs := make([]*message.Message, 30)
		for j := range msgs {
			msgs[j] = message.NewMessage(watermill.NewUUID(), []byte(strconv.Itoa(i+j)))
		}
		if err := pub.Publish(topic, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	env := []string{crashChildEnv + "=" + dir, "PUBSUB_CRASH_ADDR=" + addr, "PUBSUB_CRASH_TOPIC=" + topic}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	start := func() *testservice.Process {
		p, err := testservice.StartProcess(t.TempDir(), bin, nil, env)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// waitFor polls the record until cond holds, the child exits, or
	// a minute passes.
	waitFor := func(p *testservice.Process, what string, cond func(n int) bool) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for !cond(len(received(t, dir))) {
			select {
			case <-p.Exited():
				t.Fatalf("the consumer exited while waiting for %s:\n%s", what, p.LogTail(4000))
			default:
			}
			if time.Now().After(deadline) {
				p.Kill()
				t.Fatalf("no %s within a minute (%d recorded):\n%s", what, len(received(t, dir)), p.LogTail(4000))
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	killed := 0
	for range kills {
		p := start()
		target := len(received(t, dir)) + 1 + rng.IntN(total/kills/2)
		waitFor(p, fmt.Sprintf("%d recorded messages", target), func(n int) bool { return n >= target })
		p.Kill()
		killed++
	}
	// The last run consumes the rest.
	p := start()
	distinct := func(n int) bool {
		seen := map[string]bool{}
		for _, r := range received(t, dir) {
			seen[r[1]] = true
		}
		return len(seen) >= total
	}
	waitFor(p, "every message", distinct)
	p.Kill()

	recs := received(t, dir)
	seenID := map[string]bool{}
	next, again, lost := 0, 0, 0
	for i, r := range recs {
		n, err := strconv.Atoi(r[1])
		if err != nil {
			t.Fatalf("record %d: %q", i, r)
		}
		switch {
		case n == next:
			next++
			seenID[r[0]] = true
		case n < next:
			// Delivered again after a kill: the same event, already
			// recorded.
			if !seenID[r[0]] {
				t.Fatalf("record %d: payload %d with a new event id %s", i, n, r[0])
			}
			again++
		default:
			lost += n - next
			t.Fatalf("record %d: payload %d after %d: %d lost or reordered", i, n, next-1, n-next)
		}
	}
	t.Logf("%d messages, %d SIGKILLs: %d lost, %d reordered, %d delivered again", total, killed, total-next+lost, 0, again)
	if next != total {
		t.Fatalf("%d of %d messages recorded", next, total)
	}
	if again > killed {
		t.Fatalf("%d messages delivered again after %d kills, want at most one per kill", again, killed)
	}
}
