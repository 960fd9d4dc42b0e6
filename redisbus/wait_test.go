//go:build linux

package redisbus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/redisbus"
)

// A Redis of its own without replicas never acknowledges: Publish gives up
// after DurableConfig.Timeout with a NotReplicatedError, and, with a long
// Timeout, when the first message's context ends.
func TestDurableWaitIsBounded(t *testing.T) {
	srv, err := testservice.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	defer rdb.Close()
	publisher := func(timeout time.Duration) *redisbus.DurablePublisher {
		inner, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		pub, err := redisbus.NewDurablePublisher(inner, redisbus.DurableConfig{Client: rdb, Replicas: 1, Timeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pub.Close() })
		return pub
	}

	const timeout = 200 * time.Millisecond
	long, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	msg := message.NewMessage(watermill.NewUUID(), []byte("x"))
	msg.SetContext(long)
	start := time.Now()
	err = publisher(timeout).Publish("bounded-timeout", msg)
	elapsed := time.Since(start)
	var nr *redisbus.NotReplicatedError
	if !errors.As(err, &nr) || nr.Acknowledged != 0 || nr.Replicas != 1 {
		t.Fatalf("Publish without replicas: %v, want a NotReplicatedError with 0 of 1 acknowledged", err)
	}
	if elapsed < timeout {
		t.Fatalf("gave up after %s, before the Timeout (%s)", elapsed, timeout)
	}
	if long.Err() != nil {
		t.Fatalf("Publish waited %s, until the message's context ended, instead of the Timeout (%s)", elapsed, timeout)
	}

	// With a Timeout longer than the test, the message's context ends the
	// wait: Publish returns an error that is not a NotReplicatedError.
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	msg = message.NewMessage(watermill.NewUUID(), []byte("x"))
	msg.SetContext(short)
	err = publisher(time.Hour).Publish("bounded-context", msg)
	if err == nil || errors.As(err, &nr) || short.Err() == nil {
		t.Fatalf("Publish with an ending context: %v (context: %v), want the wait cut by the context", err, short.Err())
	}
}
