package reactor_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/reactor"
)

// Commands sent on a bus carry the causing event: sending them all again
// (a second pass over the same events) runs nothing twice.
func TestSendOncePerEvent(t *testing.T) {
	e := newEnv(t)
	logger := watermill.NewSlogLogger(slog.New(slog.DiscardHandler))
	ps := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, logger)
	t.Cleanup(func() { ps.Close() })
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	var handled atomic.Int64
	router.AddMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
		return func(m *message.Message) ([]*message.Message, error) {
			out, err := h(m)
			if err == nil {
				handled.Add(1)
			}
			return out, err
		}
	})
	commands, err := cqrs.NewCommandRouter(cqrs.RouterConfig{Executor: e.exec, Types: []aggregate.AnyType{Wallets}})
	if err != nil {
		t.Fatal(err)
	}
	commands.AddHandlers(router, ps)
	ctx, cancel := context.WithCancel(context.Background())
	routerDone := make(chan error, 1)
	go func() { routerDone <- router.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		router.Close()
		<-routerDone
	})
	<-router.Running()
	bus, err := cqrs.NewCommandBus(cqrs.BusConfig{Publisher: ps})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })

	for i := range 8 {
		e.place(t, "o"+string(rune('a'+i%3)), []string{"w0", "w1"}[i%2], int64(i+1))
	}
	hs := []reactor.Handler[tx]{reactor.On(Orders, func(ctx context.Context, a *reactor.Act[tx], id string, ev Placed) error {
		if err := reactor.Send(ctx, a, Wallets, ev.Wallet, Charge{Amount: ev.Amount}); err != nil {
			return err
		}
		return reactor.Send(ctx, a, Wallets, "audit", Note{Text: id})
	})}
	st := newStore()
	for pass := 1; pass <= 2; pass++ {
		if err := st.Reset(ctxT(t), "charges", nil); err != nil {
			t.Fatal(err)
		}
		r := newReactor(t, e, st, hs, func(c *reactor.Config[tx]) { c.Executor, c.Bus = nil, bus })
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, r, e)
		if s := r.Stats(); s.Sent != 16 {
			t.Fatalf("pass %d: Stats = %+v, want 16 sent", pass, s)
		}
		r.Close()
		// The bus blocks each publish until the router acked it.
		deadline := time.Now().Add(time.Minute)
		for handled.Load() < int64(16*pass) {
			if time.Now().After(deadline) {
				t.Fatalf("pass %d: the router handled %d commands, want %d", pass, handled.Load(), 16*pass)
			}
			time.Sleep(5 * time.Millisecond)
		}
		e.wantOnce(t, "w0", "w1")
	}
}
