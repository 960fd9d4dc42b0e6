package middleware

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/metric"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/internal/backoff"
	"github.com/esmill/esmill/internal/telemetry"
)

// RetryConfig configures the middleware made by [NewRetry]. The zero value
// retries transient errors with the defaults and returns every other error
// to Watermill.
type RetryConfig struct {
	// MaxRetries bounds the retries of a transient error. Default: 5.
	MaxRetries int
	// InitialInterval, MaxInterval and Multiplier shape the backoff.
	// Defaults: 50ms, 5s, 2.
	InitialInterval time.Duration
	MaxInterval     time.Duration
	Multiplier      float64
	// Jitter is the random fraction, between 0 and 1, added to or taken
	// from each wait. Default: 0.2.
	Jitter float64
	// Classify decides what an error means. Default: esmill.Classify.
	Classify func(error) esmill.Class
	// PoisonPublisher and PoisonTopic receive the messages that cannot
	// succeed: poison ones at once, final ones, and transient ones whose
	// retries ran out. Give both or neither. Without them, those errors
	// are returned to Watermill (which nacks the message).
	PoisonPublisher message.Publisher
	PoisonTopic     string
	// OnRetry is called before each retry. Optional.
	OnRetry func(msg *message.Message, attempt int, err error)
	// OnPark is called once a message is parked on the poison topic,
	// with its class and the error. Give a command router's AnswerParked
	// (cqrs.CommandRouter.AnswerParked) so that a caller waiting for a
	// parked command gets a reply that says parked, and why. Optional.
	OnPark func(msg *message.Message, class esmill.Class, err error)
	// Logger receives a line per parked message. Default: discard.
	Logger *slog.Logger
	// MeterProvider counts parked messages (esmill.messages.poisoned, by
	// handler and class). Default: the global provider.
	MeterProvider metric.MeterProvider
}

// Validate reports every problem with the configuration. Zero values are
// valid: they stand for the defaults.
func (c RetryConfig) Validate() error {
	var errs []error
	if c.MaxRetries < 0 {
		errs = append(errs, errors.New("middleware: RetryConfig.MaxRetries must not be negative"))
	}
	if c.InitialInterval < 0 || c.MaxInterval < 0 {
		errs = append(errs, errors.New("middleware: RetryConfig.InitialInterval and MaxInterval must not be negative"))
	}
	if c.MaxInterval > 0 && c.InitialInterval > c.MaxInterval {
		errs = append(errs, errors.New("middleware: RetryConfig.InitialInterval exceeds MaxInterval"))
	}
	if c.Multiplier != 0 && c.Multiplier < 1 {
		errs = append(errs, errors.New("middleware: RetryConfig.Multiplier must be at least 1 (or 0 for the default)"))
	}
	if c.Jitter < 0 || c.Jitter > 1 {
		errs = append(errs, errors.New("middleware: RetryConfig.Jitter must be between 0 and 1"))
	}
	if (c.PoisonPublisher == nil) != (c.PoisonTopic == "") {
		errs = append(errs, errors.New("middleware: RetryConfig.PoisonPublisher and PoisonTopic go together: give both or neither"))
	}
	return errors.Join(errs...)
}

func (c *RetryConfig) setDefaults() {
	if c.MaxRetries == 0 {
		c.MaxRetries = 5
	}
	if c.InitialInterval == 0 {
		c.InitialInterval = 50 * time.Millisecond
	}
	if c.MaxInterval == 0 {
		c.MaxInterval = max(5*time.Second, c.InitialInterval)
	}
	if c.Multiplier == 0 {
		c.Multiplier = 2
	}
	if c.Jitter == 0 {
		c.Jitter = 0.2
	}
	if c.Classify == nil {
		c.Classify = esmill.Classify
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// NewRetry returns a middleware that runs a handler again on transient
// errors, with exponential backoff and jitter, and parks messages that
// cannot succeed on a poison topic with the reason in their metadata
// (esmill.MetaPoisonReason, ...), so that the next messages go on. A
// panic in the handler (or in middleware inside this one) is recovered,
// logged with its stack, and is poison: parked at once. A command router
// answers the waiting caller before it returns a poison outcome
// (cqrs.RouterConfig.FailBadCommands).
func NewRetry(cfg RetryConfig) (message.HandlerMiddleware, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	poisoned, err := telemetry.Meter(cfg.MeterProvider).Int64Counter(telemetry.MetricPoisoned,
		metric.WithDescription("Messages parked on the poison topic, by handler and class."))
	if err != nil {
		return nil, fmt.Errorf("middleware: metrics: %w", err)
	}
	r := &retry{cfg: cfg, poisoned: poisoned}
	return r.middleware, nil
}

type retry struct {
	cfg      RetryConfig
	poisoned metric.Int64Counter
}

func (r *retry) middleware(h message.HandlerFunc) message.HandlerFunc {
	policy := backoff.Policy{Initial: r.cfg.InitialInterval, Max: r.cfg.MaxInterval, Multiplier: r.cfg.Multiplier, Jitter: r.cfg.Jitter}
	return func(msg *message.Message) ([]*message.Message, error) {
		b := policy.Start()
		for attempt := 1; ; attempt++ {
			out, err := r.call(h, msg)
			if err == nil {
				return out, nil
			}
			class := r.cfg.Classify(err)
			if class == esmill.Transient && attempt <= r.cfg.MaxRetries {
				if r.cfg.OnRetry != nil {
					r.cfg.OnRetry(msg, attempt, err)
				}
				if b.Wait(msg.Context()) != nil {
					return nil, err
				}
				continue
			}
			return nil, r.park(msg, class, attempt, err)
		}
	}
}

// call runs the handler, turning a panic into an *aggregate.PanicError
// (poison: parked at once, never retried), logged with its stack (tested:
// TestRetryParksAPanic).
func (r *retry) call(h message.HandlerFunc, msg *message.Message) (out []*message.Message, err error) {
	defer func() {
		if v := recover(); v != nil {
			pe := &aggregate.PanicError{Where: "the handler of message " + msg.UUID, Value: v, Stack: debug.Stack()}
			r.cfg.Logger.Error("middleware: panic in a handler", "uuid", msg.UUID, "handler", message.HandlerNameFromCtx(msg.Context()),
				"panic", fmt.Sprint(v), "stack", string(pe.Stack))
			out, err = nil, pe
		}
	}()
	return h(msg)
}

// park publishes the message to the poison topic and acks it, or returns
// err when there is no poison topic or the publish fails.
func (r *retry) park(msg *message.Message, class esmill.Class, attempts int, err error) error {
	if r.cfg.PoisonPublisher == nil {
		return err
	}
	p := msg.Copy()
	p.Metadata.Set(esmill.MetaPoisonReason, err.Error())
	p.Metadata.Set(esmill.MetaPoisonClass, class.String())
	p.Metadata.Set(esmill.MetaPoisonHandler, message.HandlerNameFromCtx(msg.Context()))
	p.Metadata.Set(esmill.MetaPoisonTopic, message.SubscribeTopicFromCtx(msg.Context()))
	p.Metadata.Set(esmill.MetaPoisonAttempts, strconv.Itoa(attempts))
	if perr := r.cfg.PoisonPublisher.Publish(r.cfg.PoisonTopic, p); perr != nil {
		return fmt.Errorf("middleware: parking message %s on %q failed (%v) after: %w", msg.UUID, r.cfg.PoisonTopic, perr, err)
	}
	r.cfg.Logger.Warn("middleware: message parked", "uuid", msg.UUID, "topic", r.cfg.PoisonTopic, "class", class.String(), "reason", err)
	r.poisoned.Add(msg.Context(), 1, metric.WithAttributes(
		telemetry.Handler.String(message.HandlerNameFromCtx(msg.Context())), telemetry.Class.String(class.String())))
	if r.cfg.OnPark != nil {
		r.cfg.OnPark(msg, class, err)
	}
	return nil
}
