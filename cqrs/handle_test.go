package cqrs_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
)

// replies records what a router publishes.
type replies struct {
	mu   sync.Mutex
	msgs []*message.Message
}

func (p *replies) Publish(_ string, msgs ...*message.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, msgs...)
	return nil
}

func (p *replies) Close() error { return nil }

func (p *replies) last(t *testing.T) cqrs.Reply {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.msgs) == 0 {
		t.Fatal("no reply")
	}
	var r cqrs.Reply
	if err := json.Unmarshal(p.msgs[len(p.msgs)-1].Payload, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// What the router does with each class of outcome: final and poison
// outcomes are answered; poison ones (a panic included) are returned for a
// poison queue under FailBadCommands; Reply.Version follows one rule.
func TestHandleOutcomes(t *testing.T) {
	_, exec := embeddedExecutor(t)
	for _, failBad := range []bool{false, true} {
		pub := &replies{}
		r, err := cqrs.NewCommandRouter(cqrs.RouterConfig{Executor: exec, Types: []aggregate.AnyType{Accounts}, ReplyPublisher: pub, FailBadCommands: failBad})
		if err != nil {
			t.Fatal(err)
		}
		handle := func(id string, cmd aggregate.Command) (cqrs.Reply, error) {
			msg, err := cqrs.NewCommandMessage(Accounts, id, cmd)
			if err != nil {
				t.Fatal(err)
			}
			msg.Metadata.Set(esmill.MetaReplyTopic, "replies")
			msg.SetContext(context.Background())
			err = r.Handle(msg)
			return pub.last(t), err
		}
		id := "handle-" + map[bool]string{false: "ack", true: "fail"}[failBad]
		if rep, err := handle(id, Deposit{Amount: 5}); err != nil || rep.Version != 0 || rep.Error != nil {
			t.Fatalf("deposit: %+v %v", rep, err)
		}
		// Final: answered and acked, at the entity's version.
		rep, err := handle(id, Withdraw{Amount: 50})
		if err != nil || rep.Version != 0 || rep.Error == nil || rep.Error.Kind != cqrs.KindRejected || esmill.Classify(rep.Error) != esmill.Final {
			t.Fatalf("rejection: %+v %v", rep, err)
		}
		// Poison: a panic.
		rep, err = handle(id, Explode{})
		if rep.Error == nil || rep.Error.Kind != cqrs.KindPanic || esmill.Classify(rep.Error) != esmill.Poison || rep.Version != 0 {
			t.Fatalf("panic reply: %+v", rep)
		}
		if failBad != (err != nil) || (err != nil && !errors.Is(err, aggregate.ErrPanic)) {
			t.Fatalf("FailBadCommands=%v: panic returned %v", failBad, err)
		}
		// Poison: an undecodable message; the version is not known.
		msg, _ := cqrs.NewCommandMessage(Accounts, id, Deposit{Amount: 1})
		msg.Payload = []byte{0xff}
		msg.Metadata.Set(esmill.MetaReplyTopic, "replies")
		msg.SetContext(context.Background())
		err = r.Handle(msg)
		rep = pub.last(t)
		if rep.Error == nil || rep.Error.Kind != cqrs.KindBadCommand || rep.Version != -1 || failBad != (err != nil) {
			t.Fatalf("bad command: %+v %v", rep, err)
		}
	}
}

// Handlers are named after their topics, without a doubled prefix.
func TestHandlerNames(t *testing.T) {
	_, exec := embeddedExecutor(t)
	cr, err := cqrs.NewCommandRouter(cqrs.RouterConfig{Executor: exec, Types: []aggregate.AnyType{Accounts}, Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	cr.AddHandlers(router, gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{}))
	var names []string
	for name := range router.Handlers() {
		names = append(names, name)
	}
	slices.Sort(names)
	if strings.Join(names, " ") != "esmill.commands.account.0 esmill.commands.account.1" {
		t.Fatalf("handler names %q", names)
	}
}

// A message the router cannot use says which metadata is wrong and what
// to do.
func TestBadCommandMessages(t *testing.T) {
	types := []aggregate.AnyType{Accounts}
	_, exec := embeddedExecutor(t)
	r, err := cqrs.NewCommandRouter(cqrs.RouterConfig{Executor: exec, Types: types, FailBadCommands: true})
	if err != nil {
		t.Fatal(err)
	}
	good := func() *message.Message {
		m, err := cqrs.NewCommandMessage(Accounts, "a", Deposit{Amount: 1})
		if err != nil {
			t.Fatal(err)
		}
		m.SetContext(context.Background())
		return m
	}
	tests := []struct {
		name string
		edit func(*message.Message)
		want []string
	}{
		{"plain message", func(m *message.Message) { m.Metadata = message.Metadata{} },
			[]string{esmill.MetaCategory, esmill.MetaEntityID, esmill.MetaCommand, "cqrs.NewCommandMessage"}},
		{"other category", func(m *message.Message) { m.Metadata.Set(esmill.MetaCategory, "order") },
			[]string{`"order"`, "handles account", "RouterConfig.Types"}},
		{"JSON read as CBOR", func(m *message.Message) {
			m.Payload = []byte(`{"Amount": 5}`)
			delete(m.Metadata, esmill.MetaFormat)
		}, []string{"looks like JSON", esmill.MetaFormat, `"json"`}},
		{"bad expected version", func(m *message.Message) { m.Metadata.Set(esmill.MetaCommandExpectedVersion, "soon") },
			[]string{esmill.MetaCommandExpectedVersion}},
	}
	for _, tt := range tests {
		m := good()
		tt.edit(m)
		err := r.Handle(m)
		if !errors.Is(err, cqrs.ErrBadCommand) {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %s", tt.name, err, w)
			}
		}
	}
}

// A reply the publisher refuses is not dropped: the handler returns a
// transient *ReplyNotSentError, so that the transport delivers the command
// message again, and the redelivery is answered (Idempotent: the events
// were stored once). Before, the message was acked and its caller waited
// for a reply that never came (TestOwnershipOnRedisCluster, with the
// reply topic's Redis master SIGKILLed).
func TestReplyNotSentIsRedelivered(t *testing.T) {
	client, exec := embeddedExecutor(t)
	// A real publisher that refuses every message: a closed GoChannel.
	down := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	down.Close()
	failing, err := cqrs.NewCommandRouter(cqrs.RouterConfig{Executor: exec, Types: []aggregate.AnyType{Accounts}, ReplyPublisher: down})
	if err != nil {
		t.Fatal(err)
	}
	pub := &replies{}
	working, err := cqrs.NewCommandRouter(cqrs.RouterConfig{Executor: exec, Types: []aggregate.AnyType{Accounts}, ReplyPublisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	id := "reply-not-sent-" + watermill.NewShortUUID()
	message := func(cmd aggregate.Command) *message.Message {
		msg, err := cqrs.NewCommandMessage(Accounts, id, cmd)
		if err != nil {
			t.Fatal(err)
		}
		msg.Metadata.Set(esmill.MetaReplyTopic, "replies")
		msg.SetContext(context.Background())
		return msg
	}
	for _, c := range []struct {
		name string
		cmd  aggregate.Command
	}{{"executed", Deposit{Amount: 5}}, {"rejected", Withdraw{Amount: 50}}} {
		msg := message(c.cmd)
		err := failing.Handle(msg)
		var rns *cqrs.ReplyNotSentError
		if !errors.Is(err, cqrs.ErrReplyNotSent) || !errors.As(err, &rns) || rns.MessageUUID != msg.UUID || rns.Topic != "replies" ||
			esmill.Classify(err) != esmill.Transient {
			t.Fatalf("%s, reply refused: Handle returned %v (%s), want a transient *ReplyNotSentError", c.name, err, esmill.Classify(err))
		}
		if !strings.Contains(err.Error(), "delivered again") {
			t.Errorf("the error does not say what happens next: %v", err)
		}
		// The redelivery (same UUID) is answered.
		if err := working.Handle(msg.Copy()); err != nil {
			t.Fatalf("%s, redelivered: %v", c.name, err)
		}
		rep := pub.last(t)
		switch c.name {
		case "executed":
			if rep.Error != nil || !rep.Idempotent || rep.Version != 0 {
				t.Fatalf("executed, redelivered: reply %+v, want idempotent at version 0", rep)
			}
		case "rejected":
			if rep.Error == nil || rep.Error.Kind != cqrs.KindRejected {
				t.Fatalf("rejected, redelivered: reply %+v, want the rejection", rep)
			}
		}
	}
	n := 0
	for _, err := range client.ScanAll(context.Background(), Accounts.StreamID(id), 0) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d events in the stream, want 1 (the deposit, stored once)", n)
	}
}
