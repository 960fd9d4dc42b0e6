package aggregate_test

import (
	"errors"
	"testing"
	"time"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/internal/testservice"
)

type Burst struct{ N int }

func (Burst) CommandName() string { return "Burst" }

// The entity's own limit counts commands (not events), from its stored
// history, after the idempotency checks.
func TestEntityRateLimit(t *testing.T) {
	testservice.EachSierra(t, func(t *testing.T, tg testservice.Target, addr string) {
		typ := accountType(aggregate.Handle(func(a Account, c Burst, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
			var evs []aggregate.Event
			for range c.N {
				evs = append(evs, Deposited{Amount: 1})
			}
			return evs, nil
		}, aggregate.Limit[Account, Burst](2, time.Hour)))
		ctx := ctxT(t)
		c := newClient(t, addr)
		accounts := aggregate.Bind(newExec(t, c, aggregate.Config{}), typ)
		id := newID("limited")
		for i := range 2 {
			// Three events each: still one command each.
			if _, err := accounts.Execute(ctx, id, Burst{N: 3}, aggregate.WithCommandID("burst-"+string(rune('a'+i)))); err != nil {
				t.Fatalf("command %d: %v", i, err)
			}
		}
		_, err := accounts.Execute(ctx, id, Burst{N: 1})
		var rl *aggregate.RateLimitError
		if !errors.As(err, &rl) || !errors.Is(err, aggregate.ErrRateLimited) || rl.Limit.Max != 2 {
			t.Fatalf("third command: %v", err)
		}
		// A duplicate is answered as one, not as rate limited.
		if r, err := accounts.Execute(ctx, id, Burst{N: 3}, aggregate.WithCommandID("burst-a")); err != nil || !r.Idempotent {
			t.Fatalf("duplicate: %+v %v", r, err)
		}
		// The limit holds for another process too: it is in the stream.
		waitVersion(t, c, "bank_account-"+id, 5)
		other := aggregate.Bind(newExec(t, c, aggregate.Config{}), typ)
		if _, err := other.Execute(ctx, id, Burst{N: 1}); !errors.Is(err, aggregate.ErrRateLimited) {
			t.Fatalf("another executor: %v", err)
		}
		// Commands an hour later are allowed again.
		if _, err := other.Execute(ctx, id, Burst{N: 1}, aggregate.At(time.Now().Add(61*time.Minute))); err != nil {
			t.Fatalf("an hour later: %v", err)
		}
	})
}
