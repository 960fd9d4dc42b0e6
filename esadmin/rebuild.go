package esadmin

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/esmill/esmill/sierradb"
)

// Progress is how far a rebuild is.
type Progress struct {
	Projection string `json:"projection"`
	// Done counts the events applied (or passed: events of other
	// categories count too) of Total, the events stored when the rebuild
	// began.
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
	// Rate is the events per second so far; ETA the time left at that
	// rate (0 when unknown).
	Rate     float64       `json:"rate"`
	ETA      time.Duration `json:"eta_ns"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	Finished bool          `json:"finished"`
}

// Reset forgets a registered projection: its checkpoints, parked and
// resolved events, and its read model (through the drop function given
// to [Projection]). No runner of it may be running.
func Reset(ctx context.Context, t Target, client *sierradb.Client) error {
	o, err := t.open(client)
	if err != nil {
		return err
	}
	defer o.close()
	if o.reset == nil {
		return fmt.Errorf("%w: %s %q can be reset only by a program that registers it with esadmin.Projection", ErrNotRegistered, t.kind, t.name)
	}
	return o.reset(ctx)
}

// Rebuild resets a registered projection (see [Reset]) and runs it, in
// this process, until it has applied every event stored when it began;
// progress is called at once, every interval, and when it has finished.
// No other runner of the projection may be running.
func Rebuild(ctx context.Context, t Target, client *sierradb.Client, interval time.Duration, progress func(Progress)) error {
	o, err := t.open(client)
	if err != nil {
		return err
	}
	defer o.close()
	if o.reset == nil {
		return fmt.Errorf("%w: %s %q can be rebuilt only by a program that registers it with esadmin.Projection", ErrNotRegistered, t.kind, t.name)
	}
	n, err := client.PartitionCount(ctx)
	if err != nil {
		return err
	}
	parts := make([]uint16, n)
	for i := range parts {
		parts[i] = uint16(i)
	}
	heads, err := client.PartitionSequences(ctx, parts)
	if err != nil {
		return fmt.Errorf("read the partitions' heads: %w", err)
	}
	p := Progress{Projection: t.name}
	for _, h := range heads {
		p.Total += h + 1
	}
	if err := o.reset(ctx); err != nil {
		return fmt.Errorf("reset %q: %w", t.name, err)
	}
	r, err := o.newRunner()
	if err != nil {
		return err
	}
	defer r.Close()
	start := time.Now()
	progress(p)
	if err := r.Start(); err != nil {
		return err
	}
	synced := make(chan error, 1)
	go func() { synced <- r.Sync(ctx) }()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	measure := func() {
		p.Elapsed = time.Since(start)
		p.Done = 0
		for _, ps := range r.Status().Partitions {
			p.Done += min(ps.Applied, heads[ps.Partition]) + 1
		}
		p.Rate = float64(p.Done) / p.Elapsed.Seconds()
		p.ETA = 0
		if p.Rate > 0 {
			p.ETA = time.Duration(float64(p.Total-p.Done) / p.Rate * float64(time.Second))
		}
	}
	for {
		select {
		case err := <-synced:
			if err != nil {
				return fmt.Errorf("rebuild %q: %w", t.name, err)
			}
			measure()
			p.Done, p.ETA, p.Finished = p.Total, 0, true
			progress(p)
			return nil
		case <-tick.C:
			measure()
			progress(p)
		}
	}
}

func projectionCommand() *command {
	yes := func(fs *flag.FlagSet, o *opts) {
		fs.BoolVar(&o.yes, "yes", false, "confirm: the projection's read model is dropped")
	}
	return &command{
		name: "projection", short: "reset or rebuild a projection",
		long: `Reset or rebuild a projection registered by this program (package esadmin:
the esmill command registers none). Stop the projection's runners first.`,
		sub: []*command{
			{name: "reset", args: "NAME", short: "forget a projection's checkpoints, parked events and read model", nargs: 1, conn: sierraFlags | storeFlags, flags: yes,
				long: `Forget the projection NAME: its checkpoints, parked and resolved events,
and its read model. Its next run rebuilds it from the first event.`,
				run: runReset},
			{name: "rebuild", args: "NAME", short: "reset a projection and rebuild it, with progress", nargs: 1, conn: sierraFlags | storeFlags,
				long: `Reset the projection NAME and run it until it has applied every event stored
when the rebuild began, showing progress: a bar with the rate and ETA on a
terminal, a line per interval otherwise (one JSON value with --json).`,
				flags: func(fs *flag.FlagSet, o *opts) {
					yes(fs, o)
					fs.DurationVar(&o.watch, "every", time.Second, "progress `interval`")
				},
				run: runRebuild},
		},
	}
}

func (x *exec) registered(ctx context.Context, name string) (Target, error) {
	if !x.o.yes {
		return Target{}, x.usage(fmt.Errorf("this drops the read model of %q: add --yes", name))
	}
	t, err := x.target(ctx, name)
	if err != nil {
		return Target{}, err
	}
	if t.kind != KindProjection {
		return Target{}, fmt.Errorf("%w: %q is a %s; reset and rebuild need a projection registered with esadmin.Projection (with its handlers and how to drop its read model)", ErrNotRegistered, name, t.kind)
	}
	return t, nil
}

func runReset(ctx context.Context, x *exec, args []string) error {
	t, err := x.registered(ctx, args[0])
	if err != nil {
		return err
	}
	client, err := x.sierra(ctx)
	if err != nil {
		return err
	}
	if err := Reset(ctx, t, client); err != nil {
		return err
	}
	if x.o.json {
		return x.emit(map[string]string{"projection": t.name, "action": "reset"})
	}
	_, err = fmt.Fprintf(x.out, "reset %s: its next run rebuilds it from the first event\n", t.name)
	return err
}

func runRebuild(ctx context.Context, x *exec, args []string) error {
	t, err := x.registered(ctx, args[0])
	if err != nil {
		return err
	}
	client, err := x.sierra(ctx)
	if err != nil {
		return err
	}
	if x.o.watch <= 0 {
		return x.usage(errors.New("--every must be positive"))
	}
	bar := *x.app.Terminal && !x.o.json
	err = Rebuild(ctx, t, client, x.o.watch, func(p Progress) {
		switch {
		case x.o.json:
			x.emit(p)
		case bar:
			fmt.Fprintf(x.out, "\r%s", progressBar(p, 30))
			if p.Finished {
				fmt.Fprintln(x.out)
			}
		default:
			fmt.Fprintln(x.out, progressLine(p))
		}
	})
	if bar && err != nil {
		fmt.Fprintln(x.out)
	}
	return err
}

func percent(p Progress) float64 {
	if p.Total <= 0 {
		return 100
	}
	return 100 * float64(p.Done) / float64(p.Total)
}

func eta(p Progress) string {
	switch {
	case p.Finished:
		return "done in " + p.Elapsed.Round(100*time.Millisecond).String()
	case p.ETA <= 0:
		return "ETA unknown"
	case p.ETA < 10*time.Second:
		return "ETA " + p.ETA.Round(100*time.Millisecond).String()
	}
	return "ETA " + p.ETA.Round(time.Second).String()
}

// progressLine is a progress report for logs and pipes.
func progressLine(p Progress) string {
	return fmt.Sprintf("rebuild %s: %d/%d events (%.1f%%), %.0f events/s, %s", p.Projection, p.Done, p.Total, percent(p), p.Rate, eta(p))
}

// progressBar draws a bar of width cells for a terminal.
func progressBar(p Progress, width int) string {
	filled := int(percent(p) / 100 * float64(width))
	filled = max(0, min(width, filled))
	return fmt.Sprintf("%s [%s%s] %3.0f%% %d/%d %.0f/s %s ", p.Projection, strings.Repeat("=", filled), strings.Repeat(" ", width-filled),
		percent(p), p.Done, p.Total, p.Rate, eta(p))
}
