package readmodel

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/esmill/esmill/lease"
	"github.com/esmill/esmill/sierradb"
)

const defaultBatchSize = 500

// DefaultConfirmWait bounds the wait for a partition's head to reach a
// checkpoint ([Config.ConfirmWait]).
const DefaultConfirmWait = 5 * time.Second

// PoisonPolicy says what a runner does with a poison event.
type PoisonPolicy int

const (
	// Park records the event with the reason in the store (in the same
	// transaction as the checkpoint that passes it) and goes on.
	Park PoisonPolicy = iota
	// Stop ends the runner with a [*PoisonError]; the checkpoint stays
	// before the event, so the next run meets it again.
	Stop
)

// UnknownPolicy says what a runner does with an event of a handled
// category whose name the entity type does not register.
type UnknownPolicy int

const (
	// SkipUnknown skips it; the checkpoint passes it.
	SkipUnknown UnknownPolicy = iota
	// PoisonUnknown treats it as poison (see [PoisonPolicy]).
	PoisonUnknown
)

// DivergedPolicy says what a runner does with a partition whose
// checkpoint is ahead of the server (see [DivergedError]).
type DivergedPolicy int

const (
	// StopDiverged ends the runner with a [*DivergedError]. Its instances
	// sharing the projection meet the same partitions and stop too.
	StopDiverged DivergedPolicy = iota
	// HoldDiverged keeps the runner going on its other partitions and
	// holds the diverged ones: it applies nothing more of them (and, with
	// Leases, keeps their leases so that no other instance does) until the
	// runner is restarted after an operator has dealt with the cause.
	// [Runner.Status] says diverged for them, with both numbers.
	HoldDiverged
)

// Config configures a [Runner] of a projection whose store handle is T.
type Config[T any] struct {
	// Name is the projection's name, the key of its checkpoints. Required;
	// see [ValidateName].
	Name string
	// Client is the SierraDB client to subscribe with. Required. The
	// runner does not close it. A cluster client (sierradb.Config.Cluster)
	// covers every partition of the cluster once; the checkpoints are per
	// partition, so they hold wherever a partition is coordinated.
	Client *sierradb.Client
	// Store keeps the checkpoints and the read model. Required.
	Store Store[T]
	// Handlers are the projection's handlers. Required.
	Handlers []Handler[T]

	// BatchSize is the most events applied in one store transaction.
	// Default: 500.
	BatchSize int
	// BatchTimeout is how long a batch that is not full waits for more
	// events before it is applied. Default: 20ms.
	BatchTimeout time.Duration
	// Window is the subscription's flow-control window; it must be at
	// least BatchSize. Default: the larger of 2*BatchSize and
	// sierradb.DefaultWindow.
	Window int

	// MaxAttempts is how often a handler may fail on one event before the
	// event is poison. Default: 5.
	MaxAttempts int
	// RetryBackoff and MaxRetryBackoff bound the wait before a failed
	// batch is retried; it doubles each time. Defaults: 50ms and 5s.
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// StoreRetries is how many consecutive store failures (Begin, Park,
	// Commit) are retried before the runner gives up. Default: 20; -1
	// retries for ever.
	StoreRetries int
	// OnPoison says what to do with poison events. Default: Park.
	OnPoison PoisonPolicy
	// UnknownEvents says what to do with unregistered event names of a
	// handled category. Default: SkipUnknown.
	UnknownEvents UnknownPolicy
	// Hold says what to do with the later events of a stream one of whose
	// events is parked (under either OnPoison). Default: HoldNothing.
	Hold HoldPolicy
	// OnDiverged says what to do with a partition whose checkpoint is
	// ahead of the server's head, or with every partition when the
	// checkpoints were taken on another server. Default: StopDiverged.
	OnDiverged DivergedPolicy
	// ConfirmWait is how long a checkpoint ahead of its partition's head
	// (EPSEQ) on the same server waits for the head to catch up before
	// the partition is diverged ([DivergedError]). SierraDB 0.3.1
	// delivers a multi-event append to subscribers once its first event
	// is confirmed, while the head counts confirmed events one at a time,
	// so a runner that has just applied such events can be ahead of the
	// head for a moment (a disk write on the server, longer on a loaded
	// machine). The runner logs the wait at Info. Default:
	// DefaultConfirmWait.
	ConfirmWait time.Duration

	// Leases shares the projection's partitions among its instances: each
	// instance (a Runner with the same Name and Store, usually in another
	// process) joins the lease group Group and works only on the
	// partitions it holds a lease on (see package lease). Give the
	// store's own leases (the Leases method of the postgres, sqlite,
	// mongodb and file stores) or a lease.RedisStore. Default: nil, this
	// runner works on every partition alone; a second instance without
	// Leases is not refused, but both then apply every partition and the
	// checkpoint compare-and-set makes all but one of them retry each
	// batch.
	Leases lease.Store
	// Group names the lease group. Default: Name.
	Group string
	// Instance names this instance in the group, unique among the live
	// instances. Default: lease.NewInstanceName() (host, pid, random).
	Instance string
	// LeaseTTL is how long a lease lasts without renewal: the longest a
	// partition of a killed instance waits for a new owner is about
	// LeaseTTL plus LeaseTTL/5. Leases are renewed every LeaseTTL/5.
	// Default: 10s.
	LeaseTTL time.Duration

	// LagInterval is how often the partitions' latest sequences are read
	// (EPSEQ) for [Runner.Status]. Default: 1s; a negative value disables
	// the refresh (the heads are then read only at start and by
	// [Runner.Sync]).
	LagInterval time.Duration
	// ProgressInterval is how often a catching-up runner logs its
	// progress (events/s, remaining events per partition, ETA) at Info.
	// Default: 10s; a negative value disables the progress logs.
	ProgressInterval time.Duration
	// Logger receives retries, parked events, progress and state changes.
	// Default: discard.
	Logger *slog.Logger
	// Now is the clock for ParkedAt and status times. Default: time.Now.
	Now func() time.Time
	// TracerProvider makes a consumer span ("process <projection>") for
	// each event that carries the trace context of the command that
	// wrote it (esmill.MetaTraceParent), as a child of that command's
	// span, in whatever process it ran; the handlers get its context.
	// Default: the global provider.
	TracerProvider trace.TracerProvider
	// MeterProvider records the projection's metrics, read from
	// [Runner.Status]: lag per partition (esmill.projection.lag), events
	// handled (esmill.projection.events, whose rate is the events applied
	// per second), parked events and owned partitions. Default: the
	// global provider.
	MeterProvider metric.MeterProvider
}

func (c *Config[T]) setDefaults() {
	if c.BatchSize == 0 {
		c.BatchSize = defaultBatchSize
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = 20 * time.Millisecond
	}
	if c.Window == 0 {
		c.Window = max(2*c.BatchSize, sierradb.DefaultWindow)
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 5
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = 50 * time.Millisecond
	}
	if c.MaxRetryBackoff == 0 {
		c.MaxRetryBackoff = 5 * time.Second
	}
	if c.StoreRetries == 0 {
		c.StoreRetries = 20
	}
	if c.ConfirmWait == 0 {
		c.ConfirmWait = DefaultConfirmWait
	}
	if c.LagInterval == 0 {
		c.LagInterval = time.Second
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = 10 * time.Second
	}
	if c.Leases != nil {
		if c.Group == "" {
			c.Group = c.Name
		}
		if c.Instance == "" {
			c.Instance = lease.NewInstanceName()
		}
		if c.LeaseTTL == 0 {
			c.LeaseTTL = 10 * time.Second
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem of c, joined. Zero values are valid: they
// stand for the defaults.
func (c Config[T]) Validate() error {
	var errs []error
	if err := ValidateName(c.Name); err != nil {
		errs = append(errs, err)
	}
	if c.Client == nil {
		errs = append(errs, errors.New("readmodel: Client is required"))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("readmodel: Store is required"))
	}
	if len(c.Handlers) == 0 {
		errs = append(errs, errors.New("readmodel: Handlers are required"))
	}
	if c.BatchSize < 0 {
		errs = append(errs, errors.New("readmodel: BatchSize must not be negative"))
	}
	if c.Window < 0 {
		errs = append(errs, errors.New("readmodel: Window must not be negative"))
	}
	if batch := cmp.Or(c.BatchSize, defaultBatchSize); c.Window > 0 && c.Window < batch {
		errs = append(errs, fmt.Errorf("readmodel: Window %d is smaller than BatchSize %d: batches could never fill; raise Window or lower BatchSize", c.Window, batch))
	}
	if c.MaxAttempts < 0 {
		errs = append(errs, errors.New("readmodel: MaxAttempts must not be negative"))
	}
	if c.StoreRetries < -1 {
		errs = append(errs, errors.New("readmodel: StoreRetries must be -1 or more"))
	}
	if c.OnDiverged != StopDiverged && c.OnDiverged != HoldDiverged {
		errs = append(errs, fmt.Errorf("readmodel: unknown OnDiverged %d", c.OnDiverged))
	}
	if c.Group != "" {
		if err := lease.ValidateName("group", c.Group); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Instance != "" {
		if err := lease.ValidateName("instance", c.Instance); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Leases == nil && (c.Group != "" || c.Instance != "" || c.LeaseTTL != 0) {
		errs = append(errs, errors.New("readmodel: Group, Instance and LeaseTTL need Leases: set Leases to share the partitions, or leave them empty"))
	}
	if c.LeaseTTL != 0 && c.LeaseTTL < 50*time.Millisecond {
		errs = append(errs, fmt.Errorf("readmodel: LeaseTTL %s is below 50ms", c.LeaseTTL))
	}
	for name, d := range map[string]time.Duration{"BatchTimeout": c.BatchTimeout, "RetryBackoff": c.RetryBackoff, "MaxRetryBackoff": c.MaxRetryBackoff,
		"ConfirmWait": c.ConfirmWait} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("readmodel: %s must not be negative", name))
		}
	}
	if c.OnPoison != Park && c.OnPoison != Stop {
		errs = append(errs, fmt.Errorf("readmodel: unknown OnPoison %d", c.OnPoison))
	}
	if c.Hold != HoldNothing && c.Hold != HoldEntity {
		errs = append(errs, fmt.Errorf("readmodel: unknown Hold %d", c.Hold))
	}
	if c.UnknownEvents != SkipUnknown && c.UnknownEvents != PoisonUnknown {
		errs = append(errs, fmt.Errorf("readmodel: unknown UnknownEvents %d", c.UnknownEvents))
	}
	return errors.Join(errs...)
}

func joinErrs(errs []error) error { return errors.Join(errs...) }
