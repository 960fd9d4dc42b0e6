package middleware_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/middleware"
)

// A panic inside Retry is recovered, classified poison (esmill.Classify,
// as the command router does), logged with its stack and parked at once.
func TestRetryParksAPanic(t *testing.T) {
	var logs bytes.Buffer
	pub := &recordingPublisher{}
	calls := 0
	h := must(middleware.NewRetry(middleware.RetryConfig{
		MaxRetries: 3, InitialInterval: time.Millisecond, PoisonPublisher: pub, PoisonTopic: "poison",
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}))(func(*message.Message) ([]*message.Message, error) {
		calls++
		var m map[string]int
		m["x"]++
		return nil, nil
	})
	if _, err := h(msgCtx()); err != nil || calls != 1 {
		t.Fatalf("%d calls, %v", calls, err)
	}
	parked := pub.get("poison")
	if len(parked) != 1 || parked[0].Metadata.Get(esmill.MetaPoisonClass) != "poison" ||
		!strings.Contains(parked[0].Metadata.Get(esmill.MetaPoisonReason), "assignment to entry in nil map") {
		t.Fatalf("parked %+v", parked)
	}
	if out := logs.String(); !strings.Contains(out, "panic in a handler") || !strings.Contains(out, "panic_test.go") {
		t.Fatalf("the panic is not logged with its stack:\n%s", out)
	}
	// Without a poison topic the panic is returned as poison.
	h = must(middleware.NewRetry(middleware.RetryConfig{}))(func(*message.Message) ([]*message.Message, error) { panic("boom") })
	_, err := h(msgCtx())
	var pe *aggregate.PanicError
	if !errors.As(err, &pe) || esmill.Classify(err) != esmill.Poison || len(pe.Stack) == 0 {
		t.Fatalf("%v", err)
	}
}
