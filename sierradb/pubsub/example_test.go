package pubsub_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/sierradb/pubsub"
)

// Publish two messages to a stream in one atomic append and read them back
// through a category topic.
func Example() {
	srv, err := embedded.Run() // 127.0.0.1:<free port>, in memory
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close() // the publisher and subscriber never close it

	pub, err := pubsub.NewPublisher(pubsub.PublisherConfig{Client: client})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	sub, err := pubsub.NewSubscriber(pubsub.SubscriberConfig{Client: client})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()

	placed := message.NewMessage(watermill.NewUUID(), []byte(`{"total":30}`))
	placed.Metadata.Set(esmill.MetaEventName, "OrderPlaced")
	shipped := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	shipped.Metadata.Set(esmill.MetaEventName, "OrderShipped")
	shipped.Metadata.Set("carrier", "ups")
	// Both or neither: one EMAPPEND, after the stream's current version.
	if err := pub.Publish("order-7", placed, shipped); err != nil {
		log.Fatal(err)
	}

	msgs, err := sub.Subscribe(context.Background(), "order-*") // every order-... stream
	if err != nil {
		log.Fatal(err)
	}
	for range 2 {
		msg := <-msgs
		fmt.Println(msg.Metadata[esmill.MetaStreamID], msg.Metadata[esmill.MetaStreamVersion],
			msg.Metadata[esmill.MetaEventName], string(msg.Payload), msg.Metadata["carrier"],
			msg.UUID == placed.UUID || msg.UUID == shipped.UUID)
		msg.Ack()
	}
	// Output:
	// order-7 0 OrderPlaced {"total":30}  true
	// order-7 1 OrderShipped {} ups true
}

// A message that states the version its stream must be at is appended
// only if the stream is there: a conflict is an error, never retried.
func Example_expectedVersion() {
	srv, err := embedded.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	pub, err := pubsub.NewPublisher(pubsub.PublisherConfig{Client: client})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()

	open := func() *message.Message {
		msg := message.NewMessage(watermill.NewUUID(), nil)
		msg.Metadata.Set(esmill.MetaEventName, "AccountOpened")
		msg.Metadata.Set(esmill.MetaAppendExpectedVersion, "empty")
		return msg
	}
	fmt.Println(pub.Publish("account-1", open()))
	err = pub.Publish("account-1", open())
	var conflict *sierradb.WrongExpectedVersionError
	if errors.As(err, &conflict) {
		fmt.Println("conflict: stream is at version", conflict.Current)
	}
	// Output:
	// <nil>
	// conflict: stream is at version 0
}

// A consumer group resumes after the last acknowledged message, also in a
// new subscriber, as long as both use the same checkpoint store.
func Example_consumerGroup() {
	srv, err := embedded.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	pub, err := pubsub.NewPublisher(pubsub.PublisherConfig{Client: client})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	for _, p := range []string{"a", "b", "c"} {
		if err := pub.Publish("jobs", message.NewMessage(watermill.NewUUID(), []byte(p))); err != nil {
			log.Fatal(err)
		}
	}

	checkpoints := pubsub.NewMemoryCheckpoints() // or a durable CheckpointStore
	consume := func(n int) {
		sub, err := pubsub.NewSubscriber(pubsub.SubscriberConfig{
			Client: client, ConsumerGroup: "mailer", Checkpoints: checkpoints,
		})
		if err != nil {
			log.Fatal(err)
		}
		defer sub.Close() // saves the position of what was acked
		msgs, err := sub.Subscribe(context.Background(), "jobs")
		if err != nil {
			log.Fatal(err)
		}
		for range n {
			msg := <-msgs
			fmt.Println("processed", string(msg.Payload))
			msg.Ack()
		}
	}
	consume(2)
	consume(1)
	// Output:
	// processed a
	// processed b
	// processed c
}

// Any Watermill component works on top: here a router handler reacts to
// every order event by appending to a shipping stream.
func Example_router() {
	srv, err := embedded.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	pub, err := pubsub.NewPublisher(pubsub.PublisherConfig{Client: client})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	sub, err := pubsub.NewSubscriber(pubsub.SubscriberConfig{Client: client})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()

	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		log.Fatal(err)
	}
	handled := make(chan struct{})
	router.AddHandler("ship", "order-*", sub, "shipping-queue", pub,
		func(msg *message.Message) ([]*message.Message, error) {
			defer func() { handled <- struct{}{} }()
			out := message.NewMessage(watermill.NewUUID(), []byte(msg.Metadata[esmill.MetaStreamID]))
			out.Metadata.Set(esmill.MetaEventName, "ShipmentRequested")
			// Record what caused it.
			out.Metadata.Set(esmill.MetaCausationEventID, msg.Metadata[esmill.MetaEventID])
			out.Metadata.Set(esmill.MetaCausationStreamID, msg.Metadata[esmill.MetaStreamID])
			out.Metadata.Set(esmill.MetaCausationStreamVersion, msg.Metadata[esmill.MetaStreamVersion])
			return []*message.Message{out}, nil
		})
	go router.Run(context.Background())
	<-router.Running()

	for _, order := range []string{"order-1", "order-2"} {
		msg := message.NewMessage(watermill.NewUUID(), nil)
		msg.Metadata.Set(esmill.MetaEventName, "OrderPlaced")
		if err := pub.Publish(order, msg); err != nil {
			log.Fatal(err)
		}
		<-handled
	}
	// The handler has run; the router appends its output after it
	// returns: wait for both before closing the router, which closes the
	// publisher.
	for v := int64(-1); v < 1; time.Sleep(10 * time.Millisecond) {
		if v, err = client.StreamVersion(context.Background(), "shipping-queue"); err != nil {
			log.Fatal(err)
		}
	}
	router.Close()

	for ev, err := range client.ScanAll(context.Background(), "shipping-queue", 0) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ev.StreamVersion, ev.Name, string(ev.Payload))
	}
	// Output:
	// 0 ShipmentRequested order-1
	// 1 ShipmentRequested order-2
}
