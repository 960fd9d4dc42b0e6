package scaleout

import (
	"context"
	"fmt"

	"github.com/esmill/esmill/sierradb"
)

// Counts is what Verify found.
type Counts struct {
	Commands, Entities int
	// Applied counts the Stepped events in the streams.
	Applied int
	// OutOfOrder counts events whose number is below the one before.
	OutOfOrder int
	// Twice counts numbers applied more than once (each extra time).
	Twice int
	// Lost counts numbers sent and not applied.
	Lost int
	// WrongRejections counts commands answered with an error (in a run
	// where every command is sent in order, none should be).
	WrongRejections int
	// Unanswered counts commands without a reply.
	Unanswered int
}

func (c Counts) String() string {
	return fmt.Sprintf("%d commands over %d entities, %d applied: %d applied out of order, %d lost, %d applied twice, %d wrong rejections, %d unanswered",
		c.Commands, c.Entities, c.Applied, c.OutOfOrder, c.Lost, c.Twice, c.WrongRejections, c.Unanswered)
}

// Clean reports whether nothing went wrong.
func (c Counts) Clean() bool {
	return c.OutOfOrder == 0 && c.Twice == 0 && c.Lost == 0 && c.WrongRejections == 0 && c.Unanswered == 0
}

// Verify reads each entity's stream and the sender's replies: commands
// 1..perEntity were sent to each entity, in order.
func Verify(ctx context.Context, client *sierradb.Client, s *Sender, entities []string, perEntity int) (Counts, error) {
	c := Counts{Commands: len(entities) * perEntity, Entities: len(entities)}
	for _, e := range entities {
		seen := make(map[int]int)
		last := 0
		for ev, err := range client.ScanAll(ctx, Counters.StreamID(e), 0) {
			if err != nil {
				return c, fmt.Errorf("scan %s: %w", e, err)
			}
			dec, _, err := Counters.DecodeEvent(ev)
			if err != nil {
				return c, err
			}
			st, ok := dec.(Stepped)
			if !ok {
				return c, fmt.Errorf("%s@%d: %T is not Stepped", e, ev.StreamVersion, dec)
			}
			c.Applied++
			if st.Seq < last {
				c.OutOfOrder++
			}
			last = max(last, st.Seq)
			seen[st.Seq]++
		}
		for seq := 1; seq <= perEntity; seq++ {
			switch n := seen[seq]; {
			case n == 0:
				c.Lost++
			case n > 1:
				c.Twice += n - 1
			}
			rep, ok := s.Reply(CommandID(e, seq))
			switch {
			case !ok:
				c.Unanswered++
			case rep.Error != nil:
				c.WrongRejections++
			}
		}
	}
	return c, nil
}
