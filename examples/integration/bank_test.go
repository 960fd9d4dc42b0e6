package integration_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esmill/esmill/internal/leakcheck"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/examples/bank"
	"github.com/esmill/esmill/sierradb"
)

func TestMain(m *testing.M) {
	// No registry here: Ryuk (an image from one) is off, and every test
	// terminates what it starts. This machine has a /.dockerenv file, so
	// without the override testcontainers would reach published ports
	// through the default gateway instead of loopback.
	setDefault("TESTCONTAINERS_RYUK_DISABLED", "true")
	setDefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
	// go-redis logs every refused dial while Redis restarts; the test
	// counts the failed sends itself.
	redis.SetLogger(quiet{})
	os.Exit(leakcheck.Main(m))
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func setDefault(key, value string) {
	if os.Getenv(key) == "" {
		os.Setenv(key, value)
	}
}

const (
	accounts = 4
	deposits = 40 // per account, 1 each
	// attemptTimeout bounds one send: a command with no reply by then is
	// sent again, with the same message id.
	attemptTimeout = 5 * time.Second
)

// The bank service end to end: two worker processes (examples/twoprocess/
// worker) take commands from Redis Streams, run them against SierraDB and
// project balances into PostgreSQL; this test sends the commands over the
// command bus. Mid-run SierraDB is stopped and started again, then Redis.
// A command whose reply does not come is sent again with the same message
// id, as a client must; nothing may be lost or applied twice: the test
// counts the commands confirmed, the events stored (by command id) and the
// balances in PostgreSQL, and prints the counts.
func TestBankEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three containers and two worker processes")
	}
	svc := startServices(t)
	workers := startWorkers(t, svc, 2)

	s := newSender(t, svc.redisAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	prefix := "acct" + uniqueSuffix()
	ids := make([]string, accounts)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%d", prefix, i)
		if _, err := s.execute(ctx, ids[i], bank.Open{Owner: fmt.Sprintf("owner %d", i)}); err != nil {
			t.Fatalf("open %s: %v", ids[i], err)
		}
	}

	// Deposits: one sender per account, each account's in order.
	total := int64(accounts * deposits)
	var wg sync.WaitGroup
	errs := make(chan error, accounts)
	for _, id := range ids {
		wg.Go(func() {
			for range deposits {
				if _, err := s.execute(ctx, id, bank.Deposit{Amount: 1}); err != nil {
					errs <- fmt.Errorf("deposit to %s: %w", id, err)
					return
				}
			}
		})
	}

	// Faults, each while commands flow: SierraDB down and up again once a
	// third of the deposits are confirmed, Redis once two thirds are. Each
	// stays down until a send has failed for it (the fault was felt).
	faultErr := func() error {
		if err := s.waitConfirmed(ctx, total/3+accounts); err != nil {
			return err
		}
		if err := restart(svc.sierra, func() { s.down(ctx, &s.sierraDown, &s.sierraHits) }); err != nil {
			return fmt.Errorf("SierraDB: %w", err)
		}
		if err := s.waitConfirmed(ctx, 2*total/3+accounts); err != nil {
			return err
		}
		if err := restart(svc.redis, func() { s.down(ctx, &s.redisDown, &s.redisHits) }); err != nil {
			return fmt.Errorf("Redis: %w", err)
		}
		return nil
	}()
	if faultErr != nil {
		cancel() // the senders give up rather than wait for a service that is gone
	}
	wg.Wait()
	// The deposits' counts, before the overdraft below.
	sent, attempts, failures := s.sent.Load()-accounts, s.attempts.Load()-accounts, s.failures.Load()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if faultErr != nil {
		t.Fatalf("fault injection: %v", faultErr)
	}
	if t.Failed() {
		t.FailNow()
	}

	// A business error still travels back to the sender.
	if _, err := s.execute(ctx, ids[0], bank.Withdraw{Amount: deposits + 1}); !bank.IsCode(err, bank.ErrInsufficientFunds) {
		t.Fatalf("an overdraft was not rejected with insufficient_funds: %v", err)
	}

	// What SierraDB holds: every confirmed deposit once, by command id.
	stored := storedDeposits(t, svc.sierraURL, ids)
	confirmed := s.confirmedIDs(bank.Deposit{}.CommandName())
	lost, dup := 0, 0
	for cmid := range confirmed {
		switch n := stored[cmid]; {
		case n == 0:
			lost++
		case n > 1:
			dup += n - 1
		}
	}
	unknown := 0
	for cmid := range stored {
		if !confirmed[cmid] {
			unknown++
		}
	}
	// What the read model holds, once the projection caught up.
	balances, pgErr := waitBalances(ctx, svc.pgDSN, ids, deposits)
	modelLost, modelDup := 0, 0
	for _, id := range ids {
		if d := int(balances[id]) - deposits; d < 0 {
			modelLost -= d
		} else {
			modelDup += d
		}
	}

	report := fmt.Sprintf("bank end to end: %d deposits sent, %d confirmed after %d attempts (%d failed or timed out); "+
		"SierraDB restarted (%d sends failed while it was down), Redis restarted (%d sends failed while it was down); "+
		"SierraDB holds %d deposits: lost %d, duplicated %d, unknown %d; PostgreSQL balances: lost %d, duplicated %d",
		sent, len(confirmed), attempts, failures,
		s.sierraHits.Load(), s.redisHits.Load(), countAll(stored), lost, dup, unknown, modelLost, modelDup)
	t.Log(report)
	writeReport(t, report)

	if got := len(confirmed); got != int(total) {
		t.Errorf("%d deposits confirmed, want %d", got, total)
	}
	if lost != 0 || dup != 0 || unknown != 0 {
		t.Errorf("SierraDB: lost %d, duplicated %d, unknown %d deposits", lost, dup, unknown)
	}
	if pgErr != nil || modelLost != 0 || modelDup != 0 {
		t.Errorf("PostgreSQL balances %v, want %d each (%v)", balances, deposits, pgErr)
	}
	if s.sierraHits.Load() == 0 || s.redisHits.Load() == 0 {
		t.Errorf("a restart went unnoticed by the sender: SierraDB %d, Redis %d failed sends", s.sierraHits.Load(), s.redisHits.Load())
	}
	workers.stop(t)
}

// sender sends commands over the command bus, as a client in another
// process would, and counts what happens.
type sender struct {
	bus   *cqrs.CommandBus
	accts *cqrs.Commands[bank.Account, string]

	sent, attempts, failures, confirmed atomic.Int64
	sierraDown, redisDown               atomic.Bool
	sierraHits, redisHits               atomic.Int64

	mu  sync.Mutex
	ids map[string]string // command name by id, of the commands confirmed
}

func newSender(t *testing.T, redisAddr string) *sender {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	t.Cleanup(func() { rdb.Close() })
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	replies, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client: rdb, ConsumerGroup: "sender-" + watermill.NewShortUUID(), BlockTime: 20 * time.Millisecond,
	}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	bus, err := cqrs.NewCommandBus(cqrs.BusConfig{
		Publisher: pub, ReplySubscriber: replies, Partitions: 8,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	return &sender{bus: bus, accts: cqrs.For(bus, bank.Accounts), ids: map[string]string{}}
}

// execute sends a command until it is answered: a reply (done, or done
// before: idempotent) or a business error. Every attempt carries the same
// message id, which the executor remembers in the entity's stream, so a
// command that ran but whose reply was lost is not run again.
func (s *sender) execute(ctx context.Context, id string, cmd aggregate.Command) (cqrs.Reply, error) {
	cmdID := uuid.NewString()
	s.sent.Add(1)
	backoff := 50 * time.Millisecond
	for {
		s.attempts.Add(1)
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		rep, err := s.accts.Execute(actx, id, cmd, cqrs.WithMessageUUID(cmdID))
		cancel()
		if err == nil {
			s.confirmed.Add(1)
			s.mu.Lock()
			s.ids[cmdID] = cmd.CommandName()
			s.mu.Unlock()
			return rep, nil
		}
		if errors.Is(err, aggregate.ErrRejected) {
			return rep, err
		}
		s.failures.Add(1)
		if s.sierraDown.Load() {
			s.sierraHits.Add(1)
		}
		if s.redisDown.Load() {
			s.redisHits.Add(1)
		}
		select {
		case <-ctx.Done():
			return rep, fmt.Errorf("%w (last attempt: %v)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// waitConfirmed waits until n commands are confirmed.
func (s *sender) waitConfirmed(ctx context.Context, n int64) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.confirmed.Load() < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d confirmed commands (have %d): %w", n, s.confirmed.Load(), ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// down marks a service down and waits until a send has failed because of
// it.
func (s *sender) down(ctx context.Context, flag *atomic.Bool, hits *atomic.Int64) {
	flag.Store(true)
	defer flag.Store(false)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for hits.Load() == 0 {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// confirmed returns the ids of the confirmed commands named name.
func (s *sender) confirmedIDs(name string) map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]bool{}
	for id, n := range s.ids {
		if n == name {
			out[id] = true
		}
	}
	return out
}

// storedDeposits counts the deposits in the accounts' streams by the id of
// the command that wrote them.
func storedDeposits(t *testing.T, addr string, ids []string) map[string]int {
	t.Helper()
	c, err := sierradb.New(sierradb.Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := map[string]int{}
	for _, id := range ids {
		for ev, err := range c.ScanAll(ctx, bank.Accounts.StreamID(id), 0) {
			if err != nil {
				t.Fatalf("read %s: %v", id, err)
			}
			e, md, err := bank.Accounts.DecodeEvent(ev)
			if err != nil {
				t.Fatalf("decode %s v%d: %v", ev.StreamID, ev.StreamVersion, err)
			}
			if _, ok := e.(bank.Deposited); ok {
				out[md.CommandID]++
			}
		}
	}
	return out
}

func countAll(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// waitBalances waits until the projection shows want for every account, or
// until it makes no progress for 30 s.
func waitBalances(ctx context.Context, dsn string, ids []string, want int64) (map[string]int64, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	var last map[string]int64
	progress := time.Now()
	for {
		got := map[string]int64{}
		rows, err := conn.Query(ctx, `SELECT id, balance FROM balances WHERE id = ANY($1)`, ids)
		if err != nil {
			return last, err
		}
		for rows.Next() {
			var id string
			var b int64
			if err := rows.Scan(&id, &b); err != nil {
				rows.Close()
				return last, err
			}
			got[id] = b
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return last, err
		}
		done := len(got) == len(ids)
		for _, id := range ids {
			done = done && got[id] >= want
		}
		if done {
			return got, nil
		}
		if fmt.Sprint(got) != fmt.Sprint(last) {
			last, progress = got, time.Now()
		}
		if time.Since(progress) > 30*time.Second {
			return got, errors.New("the projection made no progress for 30 s")
		}
		select {
		case <-ctx.Done():
			return got, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// writeReport appends the suite's counts to $ESMILL_REPORT_DIR/integration.txt
// when that is set (.ci/run prints them).
func writeReport(t *testing.T, line string) {
	dir := os.Getenv("ESMILL_REPORT_DIR")
	if dir == "" {
		return
	}
	f, err := os.OpenFile(filepath.Join(dir, "integration.txt"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("report: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintln(f, strings.TrimSpace(line))
}

// uniqueSuffix tells the accounts of one run from those of another.
func uniqueSuffix() string { return fmt.Sprintf("%x", time.Now().UnixNano()%(1<<40)) }
