package integration_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"

	"github.com/esmill/esmill/sierradb/sierradbcontainer"
	"github.com/esmill/esmill/sierradb/sierradbtest"
)

// The PostgreSQL image does what the postgres module relies on: the
// POSTGRES_* variables, init scripts, the two "ready" lines its wait
// strategy counts, and psql in the container for snapshots. (With the
// official image this holds by construction; CI checks the image it built.)
func TestPostgresImageServesTheModule(t *testing.T) {
	_, _, img := images()
	requireImage(t, img)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pg, err := tcpostgres.Run(ctx, img,
		tcpostgres.WithDatabase("shop"), tcpostgres.WithUsername("clerk"), tcpostgres.WithPassword("secret"),
		tcpostgres.WithInitScripts("testdata/init.sql"), tcpostgres.BasicWaitStrategies(),
		loopbackPort("5432/tcp", 0), testOpts(t))
	cleanup(t, pg)
	if err != nil {
		t.Fatal(err)
	}
	dsn, err := pg.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	owner := func() (string, error) {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return "", err
		}
		defer conn.Close(context.Background())
		var who, db, owner string
		if err := conn.QueryRow(ctx, `SELECT current_user, current_database(), (SELECT owner FROM accounts WHERE id = 'seed-1')`).Scan(&who, &db, &owner); err != nil {
			return "", err
		}
		if who != "clerk" || db != "shop" {
			t.Fatalf("connected as %s to %s, want clerk to shop", who, db)
		}
		return owner, nil
	}
	if got, err := owner(); err != nil || got != "seeded by an init script" {
		t.Fatalf("the init script's row: %q, %v", got, err)
	}

	if err := pg.Snapshot(ctx); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE accounts SET owner = 'changed'`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if err := pg.Restore(ctx); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if got, err := owner(); err != nil || got != "seeded by an init script" {
		t.Fatalf("after a restore the row holds %q, %v", got, err)
	}
	// Without a password the image refuses to start, as the official one does.
	bad, err := tcpostgres.Run(ctx, img, tcpostgres.WithPassword(""), testOpts(t),
		tcpostgres.BasicWaitStrategies())
	cleanup(t, bad)
	if err == nil {
		t.Fatal("a PostgreSQL without POSTGRES_PASSWORD started")
	}
	t.Logf("without a password: %v", err)
}

// The Redis image does what the redis module relies on: arguments and a
// config file are redis-server's, the ready line, and a published port
// that answers from outside the container.
func TestRedisImageServesTheModule(t *testing.T) {
	_, img, _ := images()
	requireImage(t, img)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rds, err := tcredis.Run(ctx, img, tcredis.WithConfigFile("testdata/redis.conf"),
		tcredis.WithLogLevel(tcredis.LogLevelVerbose), loopbackPort("6379/tcp", 0), testOpts(t))
	cleanup(t, rds)
	if err != nil {
		t.Fatal(err)
	}
	url, err := rds.ConnectionString(ctx)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	for key, want := range map[string]string{"maxmemory": "12582912", "appendonly": "yes", "loglevel": "verbose"} {
		got, err := rdb.ConfigGet(ctx, key).Result()
		if err != nil || got[key] != want {
			t.Errorf("CONFIG GET %s = %v (%v), want %s", key, got, err, want)
		}
	}
}

func requireImage(t *testing.T, img string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := sierradbcontainer.ImageAvailable(ctx, img); err != nil {
		sierradbtest.Unavailable(t, "%v", err)
	}
}
