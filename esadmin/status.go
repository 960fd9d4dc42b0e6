package esadmin

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/esmill/esmill/sierradb"
)

// The states of a partition, and of a projection (its worst partition).
const (
	StateCaughtUp = "caught-up"
	StateBehind   = "behind"
	// StateDiverged: the checkpoint is ahead of the server's head (the
	// server lost events, or is another server).
	StateDiverged = "diverged"
)

// PartitionStatus is one partition of a projection as stored: its
// checkpoint against the server's head.
type PartitionStatus struct {
	Partition uint16 `json:"partition"`
	// Checkpoint is the last applied sequence, -1 when none.
	Checkpoint int64 `json:"checkpoint"`
	// Head is the partition's latest sequence, -1 when it is empty.
	Head int64 `json:"head"`
	// Lag is Head - Checkpoint; negative when diverged.
	Lag   int64  `json:"lag"`
	State string `json:"state"`
}

// TargetStatus is a projection's or reactor's progress as its store and
// the server tell it (no runner needs to run).
type TargetStatus struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Lag sums the lags of the partitions that are not diverged.
	Lag    int64  `json:"lag"`
	Parked int    `json:"parked"`
	State  string `json:"state"`
	// Partitions lists the partitions with a checkpoint or events.
	Partitions []PartitionStatus `json:"partitions"`
}

// Status is what the status command prints.
type Status struct {
	// At is when the heads were read.
	At      time.Time      `json:"at"`
	Targets []TargetStatus `json:"projections"`
}

// ReadStatus reads each target's checkpoints and parked events from its
// store and the partitions' heads from client (EPSEQ), and compares them.
func ReadStatus(ctx context.Context, client *sierradb.Client, targets []Target) (Status, error) {
	n, err := client.PartitionCount(ctx)
	if err != nil {
		return Status{}, err
	}
	parts := make([]uint16, n)
	for i := range parts {
		parts[i] = uint16(i)
	}
	heads, err := client.PartitionSequences(ctx, parts)
	if err != nil {
		return Status{}, fmt.Errorf("read the partitions' heads: %w", err)
	}
	st := Status{At: time.Now().UTC()}
	for _, t := range targets {
		o, err := t.open(client)
		if err != nil {
			return Status{}, fmt.Errorf("%s %q: %w", t.kind, t.name, err)
		}
		ts, err := targetStatus(ctx, t, o, parts, heads)
		o.close()
		if err != nil {
			return Status{}, err
		}
		st.Targets = append(st.Targets, ts)
	}
	return st, nil
}

func targetStatus(ctx context.Context, t Target, o *opened, parts []uint16, heads map[uint16]int64) (TargetStatus, error) {
	cps, err := o.checkpoints(ctx)
	if err != nil {
		return TargetStatus{}, fmt.Errorf("%s %q: checkpoints: %w", t.kind, t.name, err)
	}
	parked, err := o.admin.List(ctx)
	if err != nil {
		return TargetStatus{}, fmt.Errorf("%s %q: parked events: %w", t.kind, t.name, err)
	}
	ts := TargetStatus{Name: t.name, Kind: t.kind, Parked: len(parked), State: StateCaughtUp, Partitions: []PartitionStatus{}}
	for _, p := range parts {
		cp := int64(-1)
		if s, ok := cps[p]; ok {
			cp = int64(s)
		}
		h, ok := heads[p]
		if !ok {
			h = -1
		}
		if cp < 0 && h < 0 {
			continue
		}
		ps := PartitionStatus{Partition: p, Checkpoint: cp, Head: h, Lag: h - cp, State: StateCaughtUp}
		switch {
		case ps.Lag < 0:
			ps.State, ts.State = StateDiverged, StateDiverged
		case ps.Lag > 0:
			ps.State = StateBehind
			ts.Lag += ps.Lag
			if ts.State != StateDiverged {
				ts.State = StateBehind
			}
		}
		ts.Partitions = append(ts.Partitions, ps)
	}
	return ts, nil
}

func statusCommand() *command {
	return &command{
		name: "status", short: "show the projections' and reactors' progress per partition", nargs: 0, conn: sierraFlags | storeFlags,
		long: `Show each projection's and reactor's progress: per partition, its
checkpoint (the last applied sequence, as stored), the server's head,
the lag between them and a state (caught-up, behind, diverged), with the
number of parked events. It reads the stores and SierraDB; no runner
needs to run. The projections are those this program registers and those
with checkpoints or parked events in the store named by --postgres or
--sqlite; --projection narrows them.`,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.projection, "projection", "", "show only this projection or reactor")
			fs.DurationVar(&o.watch, "watch", 0, "print again every `interval` (such as 2s) until interrupted")
		},
		run: runStatus,
	}
}

func runStatus(ctx context.Context, x *exec, _ []string) error {
	client, err := x.sierra(ctx)
	if err != nil {
		return err
	}
	var t *time.Ticker
	if x.o.watch > 0 {
		t = time.NewTicker(x.o.watch)
		defer t.Stop()
	}
	for {
		var targets []Target
		if x.o.projection != "" {
			one, err := x.target(ctx, x.o.projection)
			if err != nil {
				return err
			}
			targets = []Target{one}
		} else if targets, err = x.targets(ctx); err != nil {
			return err
		}
		st, err := ReadStatus(ctx, client, targets)
		if err != nil {
			return err
		}
		if x.o.json {
			err = x.emit(st)
		} else {
			if t != nil && *x.app.Terminal {
				fmt.Fprint(x.out, "\033[H\033[2J")
			}
			err = printStatus(x, st)
		}
		if err != nil || t == nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func printStatus(x *exec, st Status) error {
	if len(st.Targets) == 0 {
		_, err := fmt.Fprintln(x.out, "no projections: none is registered, and the store named by --postgres or --sqlite has none (or none is named)")
		return err
	}
	w := tabwriter.NewWriter(x.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tKIND\tPARTITION\tCHECKPOINT\tHEAD\tLAG\tSTATE\tPARKED")
	for _, t := range st.Targets {
		fmt.Fprintf(w, "%s\t%s\tall\t\t\t%d\t%s\t%d\n", t.Name, t.Kind, t.Lag, t.State, t.Parked)
		for _, p := range t.Partitions {
			fmt.Fprintf(w, "\t\t%d\t%s\t%s\t%d\t%s\t\n", p.Partition, seq(p.Checkpoint), seq(p.Head), p.Lag, p.State)
		}
	}
	fmt.Fprintf(w, "(heads read at %s)\n", st.At.Format(time.RFC3339))
	return w.Flush()
}

// seq prints a sequence, "-" for none.
func seq(n int64) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprint(n)
}
