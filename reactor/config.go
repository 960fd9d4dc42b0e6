package reactor

import (
	"errors"
	"log/slog"
	"time"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/lease"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/sierradb"
)

// DefaultBatchSize is a reactor's default [Config.BatchSize]: smaller than
// a projection's, since every event may run commands while the batch's
// store transaction is open, and a failure runs the batch's handlers
// again (their commands then come back idempotent).
const DefaultBatchSize = 16

// Config configures a [Reactor] whose checkpoints are kept in a
// readmodel store with handle T.
type Config[T any] struct {
	// Name is the reactor's name, the key of its checkpoints in Store
	// (see readmodel.ValidateName). Required.
	Name string
	// Client is the SierraDB client to subscribe with. Required. The
	// reactor does not close it.
	Client *sierradb.Client
	// Store keeps the checkpoints, and whatever the handlers write
	// through [Act.Tx], committed together. Any readmodel store will do.
	// Required.
	Store readmodel.Store[T]
	// Handlers are the reactor's handlers ([On], [OnAll]). Required.
	Handlers []Handler[T]
	// Executor runs the commands of [Execute] in this process. Bus sends
	// those of [Send]. At least one is required; the reactor closes
	// neither.
	Executor *aggregate.Executor
	Bus      *cqrs.CommandBus

	// BatchSize is the most events handled in one store transaction.
	// Default: DefaultBatchSize.
	BatchSize int
	// The fields below are those of readmodel.Config, with its defaults.
	BatchTimeout    time.Duration
	MaxAttempts     int
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	StoreRetries    int
	OnPoison        readmodel.PoisonPolicy
	LagInterval     time.Duration
	Logger          *slog.Logger
	Now             func() time.Time
	// Leases shares the reactor's partitions among its instances (the
	// same Name and Store, usually in other processes), each partition
	// handled by the one instance that holds its lease: give the store's
	// own leases (the Leases method of the postgres, sqlite, mongodb and
	// file stores) or a lease.RedisStore. Group, Instance and LeaseTTL are
	// those of readmodel.Config, with its defaults. Default: nil, this
	// instance handles every partition; a second one without Leases then
	// does the same work, and all but one of them retry each batch (the
	// commands stay idempotent).
	Leases   lease.Store
	Group    string
	Instance string
	LeaseTTL time.Duration
	// Runner, if set, adjusts the runner's configuration after the
	// fields above are applied, for settings this Config does not name.
	// The reactor sets Hold to readmodel.HoldEntity after it (see the
	// package documentation).
	Runner func(*readmodel.Config[T])
}

// Validate reports every problem of c, joined. Zero values stand for the
// defaults.
func (c Config[T]) Validate() error {
	var errs []error
	if c.Executor == nil && c.Bus == nil {
		errs = append(errs, errors.New("reactor: an Executor or a Bus is required to run the handlers' commands"))
	}
	if len(c.Handlers) == 0 {
		errs = append(errs, errors.New("reactor: Handlers are required"))
	}
	hs, err := c.handlers(&shared{})
	if err != nil {
		errs = append(errs, err)
	}
	if err := c.runnerConfig(hs).Validate(); err != nil && len(hs) > 0 {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// handlers builds the runner's handlers on x.
func (c Config[T]) handlers(x *shared) ([]readmodel.Handler[T], error) {
	hs := make([]readmodel.Handler[T], 0, len(c.Handlers))
	for _, h := range c.Handlers {
		if h.build == nil {
			return nil, errors.New("reactor: a zero Handler; build handlers with On or OnAll")
		}
		hs = append(hs, h.build(x))
	}
	return hs, nil
}

// runnerConfig is the configuration of the reactor's runner.
func (c Config[T]) runnerConfig(hs []readmodel.Handler[T]) readmodel.Config[T] {
	rc := readmodel.Config[T]{
		Name: c.Name, Client: c.Client, Store: c.Store, Handlers: hs,
		BatchSize: c.BatchSize, BatchTimeout: c.BatchTimeout, MaxAttempts: c.MaxAttempts,
		RetryBackoff: c.RetryBackoff, MaxRetryBackoff: c.MaxRetryBackoff, StoreRetries: c.StoreRetries,
		OnPoison: c.OnPoison, LagInterval: c.LagInterval, Logger: c.Logger, Now: c.Now,
		Leases: c.Leases, Group: c.Group, Instance: c.Instance, LeaseTTL: c.LeaseTTL,
	}
	if rc.BatchSize == 0 {
		rc.BatchSize = DefaultBatchSize
	}
	if c.Runner != nil {
		c.Runner(&rc)
	}
	rc.Hold = readmodel.HoldEntity
	return rc
}
