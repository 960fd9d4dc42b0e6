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

	// With a Timeout of an hour and a client that honours contexts
	// (ContextTimeoutEnabled) and has no read timeout of its own, only the
	// message's context can end the wait.
	ctxClient := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true, ReadTimeout: -1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	inner, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: ctxClient}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := redisbus.NewDurablePublisher(inner, redisbus.DurableConfig{Client: ctxClient, Replicas: 1, Timeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	short, cancelShort := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancelShort()
	msg = message.NewMessage(watermill.NewUUID(), []byte("x"))
	msg.SetContext(short)
	done := make(chan error, 1)
	go func() { done <- pub.Publish("bounded-context", msg) }()
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		ctxClient.Close() // ends the wait, so that the goroutine is joined
		<-done
		t.Fatal("Publish still waited a minute after its message's context ended")
	}
	ctxClient.Close()
	if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &nr) {
		t.Fatalf("Publish with an ending context: %v, want the context's error", err)
	}
}
