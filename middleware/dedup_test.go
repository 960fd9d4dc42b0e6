package middleware_test

import (
	"errors"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill/middleware"
)

// A delivery whose handler failed is not remembered as handled: the
// redelivery runs the handler again, and only a delivery after a success
// is answered as a duplicate.
func TestDedupFailedAttemptIsNotMarked(t *testing.T) {
	calls, dups := 0, 0
	failing := errors.New("database away")
	h := must(middleware.NewDedup(middleware.DedupConfig{OnDuplicate: func(*message.Message) { dups++ }}))(
		func(*message.Message) ([]*message.Message, error) {
			calls++
			if calls == 1 {
				return nil, failing
			}
			return nil, nil
		})
	m := msgCtx()
	if _, err := h(m); !errors.Is(err, failing) || calls != 1 {
		t.Fatalf("first delivery: %d calls, %v; want the handler's error", calls, err)
	}
	if _, err := h(m); err != nil || calls != 2 || dups != 0 {
		t.Fatalf("redelivery after a failure: %d calls, %d duplicates, %v; want the handler run again", calls, dups, err)
	}
	if _, err := h(m); err != nil || calls != 2 || dups != 1 {
		t.Fatalf("delivery after a success: %d calls, %d duplicates, %v; want a duplicate", calls, dups, err)
	}
}
