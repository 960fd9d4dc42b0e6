package esmill_test

// The README's Go snippets, compiled and run. Each snippet stands between
// a "README begin" and a "README end" comment; TestReadmeSnippets fails
// when one differs from its block in README.md.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/lease"
	"github.com/esmill/esmill/middleware"
	"github.com/esmill/esmill/reactor"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/sqlite"
	"github.com/esmill/esmill/redisbus"
	"github.com/esmill/esmill/redispart"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

// README begin
type Account struct{ Balance int64 }

type Deposited struct {
	Amount int64 `cbor:"amount"`
}

func (Deposited) EventName() string { return "MoneyDeposited" }

type Withdrawn struct {
	Amount int64 `cbor:"amount"`
}

func (Withdrawn) EventName() string { return "MoneyWithdrawn" }

type Deposit struct{ Amount int64 }

func (Deposit) CommandName() string { return "Deposit" }

type Withdraw struct{ Amount int64 }

func (Withdraw) CommandName() string { return "Withdraw" }

var ErrInsufficientFunds = errors.New("insufficient funds")

var Accounts = aggregate.MustDefine[Account, string]("bank_account",
	aggregate.On(func(a *Account, e Deposited) { a.Balance += e.Amount }),
	aggregate.On(func(a *Account, e Withdrawn) { a.Balance -= e.Amount }),
	aggregate.Handle(func(a Account, c Deposit, ctx *aggregate.CommandContext) ([]aggregate.Event, error) {
		return aggregate.Events(Deposited{Amount: c.Amount}), nil
	}),
	aggregate.Handle(func(a Account, c Withdraw, ctx *aggregate.CommandContext) ([]aggregate.Event, error) {
		if c.Amount > a.Balance {
			return nil, ErrInsufficientFunds
		}
		return aggregate.Events(Withdrawn{Amount: c.Amount}), nil
	}),
)

// README end

// readmeExecutor runs the executor snippet: a command caused by an event
// and carried by a message, delivered twice.
func readmeExecutor(ctx context.Context, client *sierradb.Client, ev sierradb.Event, msg *message.Message) (*aggregate.Executor, []aggregate.Result, error) {
	var results []aggregate.Result
	for range 2 {
		// README begin
		exec, _ := aggregate.NewExecutor(client, aggregate.Config{})
		accounts := aggregate.Bind(exec, Accounts)
		res, err := accounts.Execute(ctx, "alice", Deposit{Amount: 100}, aggregate.WithCommandID("opening-alice"))
		// A command caused by an event, carried by a message: it runs once,
		// however often the message or the event is delivered.
		res, err = accounts.Execute(ctx, "alice", Withdraw{Amount: 30},
			aggregate.CausedByEvent(ev), aggregate.WithCommandID(msg.UUID))
		// README end
		results = append(results, res)
		if err != nil {
			return exec, results, err
		}
		if len(results) == 1 {
			exec.Close() // the second delivery meets a new executor, as in another process
			continue
		}
		return exec, results, nil
	}
	panic("unreachable")
}

// readmeTransaction runs the transaction snippet.
func readmeTransaction(ctx context.Context, exec *aggregate.Executor, tenantKey uuid.UUID) (aggregate.TxResult, error) {
	// README begin
	res, err := exec.Transaction(ctx, tenantKey, func(ctx context.Context, tx *aggregate.Tx) error {
		accounts := aggregate.In(tx, Accounts)
		onTenant := aggregate.OnPartitionKey(tenantKey) // accounts of one tenant share its key
		if _, err := accounts.Execute(ctx, "carol", Withdraw{Amount: 10}, onTenant); err != nil {
			return err // nothing is written
		}
		_, err := accounts.Execute(ctx, "dave", Deposit{Amount: 10}, onTenant)
		return err
	})
	// README end
	return res, err
}

// readmeProjection runs the projection snippet into SQLite until it has
// applied everything stored, and returns the balances.
func readmeProjection(ctx context.Context, client *sierradb.Client, db *sql.DB) (map[string]int64, error) {
	store, err := sqlite.New(ctx, db, sqlite.Config{})
	if err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE balances (id TEXT PRIMARY KEY, balance INTEGER)`); err != nil {
		return nil, err
	}
	// README begin
	credit := func(ctx context.Context, tx *sql.Tx, id string, amount int64) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO balances (id, balance) VALUES (?, ?)
			ON CONFLICT (id) DO UPDATE SET balance = balance + excluded.balance`, id, amount)
		return err
	}
	projection, _ := readmodel.New(readmodel.Config[*sql.Tx]{
		Name: "balances", Client: client, Store: store,
		Handlers: []readmodel.Handler[*sql.Tx]{
			readmodel.On(Accounts, func(ctx context.Context, tx *sql.Tx, id string, e Deposited, _ readmodel.Meta) error {
				return credit(ctx, tx, id, e.Amount)
			}),
			readmodel.On(Accounts, func(ctx context.Context, tx *sql.Tx, id string, e Withdrawn, _ readmodel.Meta) error {
				return credit(ctx, tx, id, -e.Amount)
			}),
		},
	})
	projection.Start()
	defer projection.Close()
	// README end
	if err := projection.Sync(ctx); err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, `SELECT id, balance FROM balances`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	balances := map[string]int64{}
	for rows.Next() {
		var id string
		var b int64
		if err := rows.Scan(&id, &b); err != nil {
			return nil, err
		}
		balances[id] = b
	}
	return balances, rows.Err()
}

// readmeReactor runs the reactor snippet until it has handled everything
// stored, and returns the cash desk's balance.
func readmeReactor(ctx context.Context, client *sierradb.Client, exec *aggregate.Executor, db *sql.DB) (int64, error) {
	store, err := sqlite.New(ctx, db, sqlite.Config{})
	if err != nil {
		return 0, err
	}
	// README begin
	cashDesk, _ := reactor.New(reactor.Config[*sql.Tx]{
		Name: "cash-desk", Client: client, Store: store, Executor: exec,
		Handlers: []reactor.Handler[*sql.Tx]{
			// What is withdrawn from an account is paid in at the cash desk:
			// once per withdrawal, however often it is delivered.
			reactor.On(Accounts, func(ctx context.Context, a *reactor.Act[*sql.Tx], id string, e Withdrawn) error {
				_, err := reactor.Execute(ctx, a, Accounts, "cash-desk", Deposit{Amount: e.Amount})
				return err
			}),
		},
	})
	cashDesk.Start()
	defer cashDesk.Close()
	// README end
	if err := cashDesk.Sync(ctx); err != nil {
		return 0, err
	}
	desk, _, err := aggregate.Bind(exec, Accounts).Load(ctx, "cash-desk")
	return desk.Balance, err
}

// README begin
type Customer struct{ Holder, Currency string }

// OpenedV1 is the shape stored before.
type OpenedV1 struct {
	Owner string `cbor:"owner"`
}

func (OpenedV1) EventName() string { return "Opened" }

type Opened struct {
	Holder   string `cbor:"holder"`
	Currency string `cbor:"currency"`
}

func (Opened) EventName() string { return "Opened" }
func (Opened) EventVersion() int { return 2 }

var Customers = aggregate.MustDefine[Customer, string]("customer",
	aggregate.On(func(c *Customer, e Opened) { c.Holder, c.Currency = e.Holder, e.Currency }),
	// Opened v1 → v2.
	aggregate.Upcast[Customer](func(o OpenedV1) (Opened, error) {
		return Opened{Holder: o.Owner, Currency: "EUR"}, nil
	}),
	// Older still, the event was called Created: Created v1 → Opened v1 → v2.
	aggregate.Rename[Customer](
		aggregate.EventSchema{Name: "Created", Version: 1},
		aggregate.EventSchema{Name: "Opened", Version: 1}),
)

// README end

// readmeGoChannel runs the GoChannel wiring snippet.
func readmeGoChannel(ctx context.Context, exec *aggregate.Executor, logger watermill.LoggerAdapter) (cqrs.Reply, error) {
	// README begin
	pubsub := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, logger)
	router, _ := message.NewRouter(message.RouterConfig{}, logger)
	commands, _ := cqrs.NewCommandRouter(cqrs.RouterConfig{Executor: exec, Types: []aggregate.AnyType{Accounts}, ReplyPublisher: pubsub})
	commands.AddHandlers(router, pubsub)
	go router.Run(ctx)
	<-router.Running()

	bus, _ := cqrs.NewCommandBus(cqrs.BusConfig{Publisher: pubsub, ReplySubscriber: pubsub})
	rep, err := cqrs.For(bus, Accounts).Execute(ctx, "alice", Deposit{Amount: 10})
	// README end
	bus.Close()
	router.Close()
	pubsub.Close()
	return rep, err
}

// readmeRedisStreams wires the Redis Streams snippet into a running router.
func readmeRedisStreams(rdb *redis.Client, exec *aggregate.Executor, types []aggregate.AnyType, router *message.Router, logger watermill.LoggerAdapter) error {
	// README begin
	sub, _ := redispart.NewSubscriber(redispart.SubscriberConfig{Client: rdb, Group: "bank-workers",
		MaxInFlight: 16, OrderKey: cqrs.OrderKey}) // a partition's entities side by side, each in order
	pub, _ := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, logger)
	commands, _ := cqrs.NewCommandRouter(cqrs.RouterConfig{Executor: exec, Types: types, ReplyPublisher: pub,
		Ownership: &cqrs.Ownership{Store: lease.NewRedisStore(rdb, ""), Group: "bank-workers"}})
	commands.AddHandlers(router, sub)
	// README end
	return nil
}

// readmeSierraCluster is the SierraDB cluster snippet: the client is made
// without connecting.
func readmeSierraCluster() (*sierradb.Client, error) {
	// README begin
	client, err := sierradb.New(sierradb.Config{Cluster: &sierradb.ClusterConfig{
		// Every node's client address, in node index order (sierradb -i 0, 1, 2).
		Nodes:             []string{"10.0.0.1:9090", "10.0.0.2:9090", "10.0.0.3:9090"},
		ReplicationFactor: 3, // the nodes' replication.factor
		Buckets:           4, // the nodes' bucket.count
	}})
	// README end
	return client, err
}

// readmeRedisCluster is the Redis Cluster snippet: nothing connects until
// the first command.
func readmeRedisCluster(logger watermill.LoggerAdapter) (message.Publisher, message.Subscriber, message.HandlerMiddleware, *redis.ClusterClient, *redispart.Subscriber, *cqrs.Ownership, error) {
	// README begin
	rdb := redisbus.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"10.0.1.1:6379", "10.0.1.2:6379", "10.0.1.3:6379"}})
	inner, _ := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, logger)
	pub, err := redisbus.NewDurablePublisher(inner, redisbus.DurableConfig{Client: rdb, Replicas: 1})
	sub, _ := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: rdb, ConsumerGroup: "bank-workers",
		ClaimInterval: time.Second, MaxIdleTime: 5 * time.Second}, logger)
	dedup, _ := middleware.NewDedup(middleware.DedupConfig{Store: middleware.NewRedisDedupStore(rdb, "bank:dedup:"), ReplyPublisher: pub})
	// Or, with routers sharing the partitions:
	owned, _ := redispart.NewSubscriber(redispart.SubscriberConfig{Client: rdb, Group: "bank-workers"})
	own := &cqrs.Ownership{Store: lease.NewRedisStore(rdb, "bank:lease:"), Group: "bank-workers"}
	// README end
	return pub, sub, dedup, rdb, owned, own, err
}

// TestReadmeCluster builds the cluster snippets (they name addresses of
// no real cluster, and connect lazily).
func TestReadmeCluster(t *testing.T) {
	client, err := readmeSierraCluster()
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if !client.IsCluster() {
		t.Error("the README's cluster client is not a cluster client")
	}
	pub, sub, dedup, rdb, owned, own, err := readmeRedisCluster(watermill.NopLogger{})
	if err != nil || pub == nil || sub == nil || dedup == nil || owned == nil || own.Validate() != nil {
		t.Fatalf("README Redis Cluster wiring: %v", err)
	}
	owned.Close()
	sub.Close()
	pub.Close()
	rdb.Close()
}

// The README's snippets, run in order on the embedded server.
func Example_readme() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := embedded.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	// Entities and the executor.
	cause := sierradb.Event{ID: uuid.New(), StreamID: "transfer-1", StreamVersion: 4}
	msg := message.NewMessage(watermill.NewUUID(), nil)
	exec, results, err := readmeExecutor(ctx, client, cause, msg)
	if err != nil {
		log.Fatal(err)
	}
	defer exec.Close()
	fmt.Printf("withdrew 30: version %d; delivered again: idempotent=%v version %d\n",
		results[0].Version, results[1].Idempotent, results[1].Version)
	_, err = aggregate.Bind(exec, Accounts).Execute(ctx, "alice", Withdraw{Amount: 500})
	fmt.Println("overdraft rejected:", errors.Is(err, ErrInsufficientFunds))

	// A transaction on one tenant's partition key.
	tenantKey := uuid.New()
	if _, err := aggregate.Bind(exec, Accounts).Execute(ctx, "carol", Deposit{Amount: 100}, aggregate.OnPartitionKey(tenantKey)); err != nil {
		log.Fatal(err)
	}
	tx, err := readmeTransaction(ctx, exec, tenantKey)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("transaction committed=%v with %d commands\n", tx.Committed, len(tx.Results))

	// Commands as messages over GoChannel.
	logger := watermill.NewSlogLogger(slog.New(slog.DiscardHandler))
	rep, err := readmeGoChannel(ctx, exec, logger)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("deposit through the bus: %s version %d\n", rep.StreamID, rep.Version)

	// The projection into SQLite.
	dir, err := os.MkdirTemp("", "readme")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := sqlite.OpenDB(filepath.Join(dir, "readmodel.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	balances, err := readmeProjection(ctx, client, db)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("balances:", balances)

	// The reactor, with its checkpoints in the same database.
	desk, err := readmeReactor(ctx, client, exec, db)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("cash desk:", desk)
	// Output:
	// withdrew 30: version 1; delivered again: idempotent=true version 1
	// overdraft rejected: true
	// transaction committed=true with 2 commands
	// deposit through the bus: bank_account-alice version 2
	// balances: map[alice:80 carol:90 dave:10]
	// cash desk: 40
}

// The Redis Streams snippet, between a bus and a router over real Redis.
func TestReadmeRedisStreams(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: testservice.RequireRedis(t)})
	defer rdb.Close()
	srv := embedded.RunT(t)
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	exec, err := aggregate.NewExecutor(client, aggregate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Close()
	logger := watermill.NewSlogLogger(slog.New(slog.DiscardHandler))
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := readmeRedisStreams(rdb, exec, []aggregate.AnyType{Accounts}, router, logger); err != nil {
		t.Fatal(err)
	}
	go router.Run(context.Background())
	defer router.Close()
	<-router.Running()
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, logger)
	if err != nil {
		t.Fatal(err)
	}
	replies, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: rdb, ConsumerGroup: "sender-" + watermill.NewShortUUID()}, logger)
	if err != nil {
		t.Fatal(err)
	}
	bus, err := cqrs.NewCommandBus(cqrs.BusConfig{Publisher: pub, ReplySubscriber: replies})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := cqrs.For(bus, Accounts).Execute(ctx, "erin", Deposit{Amount: 5})
	if err != nil || rep.Version != 0 || rep.StreamID != "bank_account-erin" {
		t.Fatalf("%+v %v", rep, err)
	}
}

// The versioning snippet reads an event stored under its oldest name and
// shape (Created v1) as the current Opened v2.
func TestReadmeEventVersioning(t *testing.T) {
	srv := embedded.RunT(t)
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	payload, err := codec.EncodePayload(codec.CBOR, "Created", OpenedV1{Owner: "ann"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stream := Customers.StreamID("ann")
	if _, err := client.AppendMulti(ctx, Customers.PartitionKey("ann"), []sierradb.NewEvent{{
		StreamID: stream, Name: "Created", ExpectedVersion: sierradb.ExpectEmpty, Payload: payload,
	}}); err != nil {
		t.Fatal(err)
	}
	exec, err := aggregate.NewExecutor(client, aggregate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Close()
	c, v, err := aggregate.Bind(exec, Customers).Load(ctx, "ann")
	if err != nil || v != 0 || c != (Customer{Holder: "ann", Currency: "EUR"}) {
		t.Fatalf("Load: %+v version %d, %v; want ann in EUR at version 0", c, v, err)
	}
}
