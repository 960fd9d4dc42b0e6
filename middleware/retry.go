package middleware

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill"
)

// Retry runs a handler again on transient errors, with exponential backoff
// and jitter, and parks messages that cannot succeed on a poison topic with
// the reason in their metadata, so that the next messages go on.
type Retry struct {
	// MaxRetries bounds the retries of a transient error. Default: 5.
	MaxRetries int
	// InitialInterval, MaxInterval and Multiplier shape the backoff.
	// Defaults: 50ms, 5s, 2.
	InitialInterval time.Duration
	MaxInterval     time.Duration
	Multiplier      float64
	// Jitter is the random fraction added to or taken from each wait.
	// Default: 0.2.
	Jitter float64
	// Classify decides what an error means. Default: esmill.Classify.
	Classify func(error) esmill.Class
	// PoisonPublisher and PoisonTopic receive the messages that cannot
	// succeed: poison ones at once, final ones, and transient ones whose
	// retries ran out. Without them, those errors are returned to
	// Watermill (which nacks the message).
	PoisonPublisher message.Publisher
	PoisonTopic     string
	// OnRetry is called before each retry.
	OnRetry func(msg *message.Message, attempt int, err error)
	// Logger receives a line per parked message. Default: discard.
	Logger *slog.Logger
}

func (r Retry) withDefaults() Retry {
	if r.MaxRetries == 0 {
		r.MaxRetries = 5
	}
	if r.InitialInterval == 0 {
		r.InitialInterval = 50 * time.Millisecond
	}
	if r.MaxInterval == 0 {
		r.MaxInterval = 5 * time.Second
	}
	if r.Multiplier == 0 {
		r.Multiplier = 2
	}
	if r.Jitter == 0 {
		r.Jitter = 0.2
	}
	if r.Classify == nil {
		r.Classify = esmill.Classify
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r
}

// Middleware wraps a handler.
func (r Retry) Middleware(h message.HandlerFunc) message.HandlerFunc {
	r = r.withDefaults()
	return func(msg *message.Message) ([]*message.Message, error) {
		delay := r.InitialInterval
		for attempt := 1; ; attempt++ {
			out, err := h(msg)
			if err == nil {
				return out, nil
			}
			class := r.Classify(err)
			if class == esmill.Transient && attempt <= r.MaxRetries {
				if r.OnRetry != nil {
					r.OnRetry(msg, attempt, err)
				}
				wait := time.Duration(float64(delay) * (1 + r.Jitter*(2*rand.Float64()-1)))
				select {
				case <-msg.Context().Done():
					return nil, err
				case <-time.After(wait):
				}
				delay = min(time.Duration(float64(delay)*r.Multiplier), r.MaxInterval)
				continue
			}
			return nil, r.park(msg, class, attempt, err)
		}
	}
}

// park publishes the message to the poison topic and acks it, or returns
// err when there is no poison topic or the publish fails.
func (r Retry) park(msg *message.Message, class esmill.Class, attempts int, err error) error {
	if r.PoisonPublisher == nil || r.PoisonTopic == "" {
		return err
	}
	p := msg.Copy()
	p.Metadata.Set(esmill.MetaPoisonReason, err.Error())
	p.Metadata.Set(esmill.MetaPoisonClass, class.String())
	p.Metadata.Set(esmill.MetaPoisonHandler, message.HandlerNameFromCtx(msg.Context()))
	p.Metadata.Set(esmill.MetaPoisonTopic, message.SubscribeTopicFromCtx(msg.Context()))
	p.Metadata.Set(esmill.MetaPoisonAttempts, strconv.Itoa(attempts))
	if perr := r.PoisonPublisher.Publish(r.PoisonTopic, p); perr != nil {
		return fmt.Errorf("middleware: parking message %s failed (%v) after: %w", msg.UUID, perr, err)
	}
	r.Logger.Warn("middleware: message parked", "uuid", msg.UUID, "class", class.String(), "reason", err)
	return nil
}
