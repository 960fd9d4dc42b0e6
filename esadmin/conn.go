package esadmin

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill/readmodel/postgres"
	"github.com/esmill/esmill/readmodel/sqlite"
	"github.com/esmill/esmill/sierradb"
)

// The environment variables that stand in for the connection flags.
const (
	EnvSierraDB    = "ESMILL_SIERRADB"
	EnvRedis       = "ESMILL_REDIS"
	EnvPostgres    = "ESMILL_POSTGRES"
	EnvSQLite      = "ESMILL_SQLITE"
	EnvTablePrefix = "ESMILL_TABLE_PREFIX"
)

// opts are the parsed flags of one command.
type opts struct {
	sierradb, redis, postgres, sqlite, prefix string
	json                                      bool
	// the command's own flags
	projection, by, note, topic, to string
	all, yes, fromStart             bool
	count, limit                    int
	from                            uint64
	watch                           time.Duration
}

// services says which connection flags a command takes.
type services uint8

const (
	sierraFlags services = 1 << iota
	redisFlags
	storeFlags
)

func (o *opts) connFlags(fs *flag.FlagSet, s services) {
	if s&sierraFlags != 0 {
		fs.StringVar(&o.sierradb, "sierradb", "", "SierraDB `host:port` (env "+EnvSierraDB+")")
	}
	if s&redisFlags != 0 {
		fs.StringVar(&o.redis, "redis", "", "Redis `host:port` of the poison topic (env "+EnvRedis+")")
	}
	if s&storeFlags != 0 {
		fs.StringVar(&o.postgres, "postgres", "", "PostgreSQL `DSN` of the projection store (env "+EnvPostgres+")")
		fs.StringVar(&o.sqlite, "sqlite", "", "SQLite database `file` of the projection store (env "+EnvSQLite+")")
		fs.StringVar(&o.prefix, "table-prefix", "", "table `prefix` of the projection store (env "+EnvTablePrefix+"; default esmill_)")
	}
	fs.BoolVar(&o.json, "json", false, "print JSON (one value per line) instead of tables")
}

// exec is one run of a command: its flags, output and the connections it
// opened, closed when it ends.
type exec struct {
	app     *App
	name    string // the command line's command, such as "esmill parked show"
	o       *opts
	out     io.Writer
	closers []func()

	client *sierradb.Client
	rdb    *redis.Client
	store  storeHandle
}

func (x *exec) close() {
	for i := len(x.closers) - 1; i >= 0; i-- {
		x.closers[i]()
	}
}

// setting returns a flag's value, else its environment variable's.
func (x *exec) setting(flagValue, env string) string {
	if flagValue != "" {
		return flagValue
	}
	return x.app.Getenv(env)
}

// ErrNotConfigured: a command needs a service that no flag or environment
// variable names.
var ErrNotConfigured = errors.New("esadmin: service not configured")

func notConfigured(what, flagName, env string) error {
	return fmt.Errorf("%w: %s: give --%s or set %s", ErrNotConfigured, what, flagName, env)
}

// sierra returns the SierraDB client, connecting on first use.
func (x *exec) sierra(ctx context.Context) (*sierradb.Client, error) {
	if x.client != nil {
		return x.client, nil
	}
	addr := x.setting(x.o.sierradb, EnvSierraDB)
	if addr == "" {
		return nil, notConfigured("no SierraDB address", "sierradb", EnvSierraDB)
	}
	c, err := sierradb.New(sierradb.Config{Addr: addr})
	if err != nil {
		return nil, fmt.Errorf("connect to SierraDB at %s: %w", addr, err)
	}
	if _, err := c.PartitionCount(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("SierraDB at %s: %w", addr, err)
	}
	x.client = c
	x.closers = append(x.closers, func() { c.Close() })
	return c, nil
}

// redisClient returns the Redis client, connecting on first use.
func (x *exec) redisClient(ctx context.Context) (*redis.Client, error) {
	if x.rdb != nil {
		return x.rdb, nil
	}
	addr := x.setting(x.o.redis, EnvRedis)
	if addr == "" {
		return nil, notConfigured("no Redis address", "redis", EnvRedis)
	}
	r := redis.NewClient(&redis.Options{Addr: addr})
	if err := r.Ping(ctx).Err(); err != nil {
		r.Close()
		return nil, fmt.Errorf("Redis at %s: %w", addr, err)
	}
	x.rdb = r
	x.closers = append(x.closers, func() { r.Close() })
	return r, nil
}

// storeHandle is the projection store the flags name, with its handle
// type erased.
type storeHandle struct {
	desc string
	// target returns an unregistered projection of the store.
	target func(name string) Target
	names  func(ctx context.Context) ([]string, error)
}

// projectionStore opens the store the flags name; ok is false when none
// is named.
func (x *exec) projectionStore(ctx context.Context) (storeHandle, bool, error) {
	if x.store.target != nil {
		return x.store, true, nil
	}
	dsn := x.setting(x.o.postgres, EnvPostgres)
	file := x.setting(x.o.sqlite, EnvSQLite)
	prefix := x.setting(x.o.prefix, EnvTablePrefix)
	switch {
	case dsn != "" && file != "":
		return storeHandle{}, false, fmt.Errorf("both a PostgreSQL and a SQLite store are named (--postgres/%s, --sqlite/%s): name one", EnvPostgres, EnvSQLite)
	case dsn != "":
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			return storeHandle{}, false, fmt.Errorf("PostgreSQL: %w", err)
		}
		x.closers = append(x.closers, pool.Close)
		s, err := postgres.New(ctx, pool, postgres.Config{TablePrefix: prefix})
		if err != nil {
			return storeHandle{}, false, err
		}
		x.store = storeHandle{desc: "PostgreSQL", names: s.Projections, target: func(name string) Target { return Stored(name, s) }}
	case file != "":
		db, err := sqlite.OpenDB(file)
		if err != nil {
			return storeHandle{}, false, fmt.Errorf("SQLite: %w", err)
		}
		x.closers = append(x.closers, func() { db.Close() })
		s, err := sqlite.New(ctx, db, sqlite.Config{TablePrefix: prefix})
		if err != nil {
			return storeHandle{}, false, err
		}
		x.store = storeHandle{desc: "SQLite", names: s.Projections, target: func(name string) Target { return Stored(name, s) }}
	default:
		return storeHandle{}, false, nil
	}
	return x.store, true, nil
}

// usage returns a usage error of the command.
func (x *exec) usage(err error) error { return &UsageError{Command: x.name, Err: err} }

// emit writes v as one line of JSON.
func (x *exec) emit(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(x.out, "%s\n", b)
	return err
}
