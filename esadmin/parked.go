package esadmin

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/esmill/esmill/readmodel"
)

// ParsePosition reads a position written "partition:sequence", as
// readmodel.Position prints it.
func ParsePosition(s string) (readmodel.Position, error) {
	p, q, ok := strings.Cut(s, ":")
	part, err1 := strconv.ParseUint(p, 10, 16)
	sq, err2 := strconv.ParseUint(q, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return readmodel.Position{}, fmt.Errorf("%q is not a position: write partition:sequence, such as 3:1207", s)
	}
	return readmodel.Position{Partition: uint16(part), Sequence: sq}, nil
}

// ParkedJSON is a parked event as the parked commands print it.
type ParkedJSON struct {
	Projection string    `json:"projection"`
	Position   string    `json:"position"`
	Cause      string    `json:"cause"`
	Reason     string    `json:"reason"`
	Attempts   int       `json:"attempts"`
	ParkedAt   time.Time `json:"parked_at"`
	Event      Event     `json:"event"`
}

func parkedJSON(projection string, p readmodel.ParkedEvent) ParkedJSON {
	return ParkedJSON{Projection: projection, Position: p.Position.String(), Cause: string(p.Cause), Reason: p.Reason,
		Attempts: p.Attempts, ParkedAt: p.ParkedAt.UTC(), Event: decodeParked(p)}
}

func parkedCommand() *command {
	projFlag := func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.projection, "projection", "", "the projection or reactor (required)")
	}
	resolveFlags := func(fs *flag.FlagSet, o *opts) {
		projFlag(fs, o)
		fs.StringVar(&o.by, "by", "", "who resolves it, recorded with it (default: the OS user)")
		fs.StringVar(&o.note, "note", "", "why, recorded with it")
	}
	return &command{
		name: "parked", short: "list, show, replay or skip the parked events of projections and reactors",
		long: `Resolve the events a projection or reactor parked (poison events set
aside with the reason, so that it could go on).`,
		sub: []*command{
			{name: "list", short: "list parked events", nargs: 0, conn: sierraFlags | storeFlags,
				long: `List the parked events of one projection (--projection) or of all of them,
in position order.`,
				flags: func(fs *flag.FlagSet, o *opts) {
					fs.StringVar(&o.projection, "projection", "", "list only this projection's or reactor's")
				},
				run: runParkedList},
			{name: "show", args: "POSITION", short: "show a parked event, decoded", nargs: 1, conn: sierraFlags | storeFlags, flags: projFlag,
				long: `Show the event parked at POSITION (partition:sequence), with its payload
and metadata decoded as JSON, the cause, the reason and the attempts.`,
				run: runParkedShow},
			{name: "replay", args: "POSITION", short: "apply a parked event through the fixed handlers", nargs: 1, conn: sierraFlags | storeFlags, flags: resolveFlags,
				long: `Apply the event parked at POSITION through the projection's handlers, once
they are fixed, in one transaction that takes it off the parked list, then
apply the events held behind it. It needs the projection's handlers: run it
from a program that registers the projection (package esadmin); the esmill
command cannot replay.`,
				run: func(ctx context.Context, x *exec, args []string) error { return runResolve(ctx, x, args, true) }},
			{name: "skip", args: "POSITION", short: "drop a parked event without applying it", nargs: 1, conn: sierraFlags | storeFlags, flags: resolveFlags,
				long: `Take the event parked at POSITION off the parked list without applying it,
recording who and why.`,
				run: func(ctx context.Context, x *exec, args []string) error { return runResolve(ctx, x, args, false) }},
		},
	}
}

func runParkedList(ctx context.Context, x *exec, _ []string) error {
	var targets []Target
	if x.o.projection != "" {
		t, err := x.target(ctx, x.o.projection)
		if err != nil {
			return err
		}
		targets = []Target{t}
	} else {
		var err error
		if targets, err = x.targets(ctx); err != nil {
			return err
		}
	}
	var all []ParkedJSON
	for _, t := range targets {
		o, err := x.open(ctx, t, false)
		if err != nil {
			return err
		}
		evs, err := o.admin.List(ctx)
		if err != nil {
			return fmt.Errorf("%s %q: %w", t.kind, t.name, err)
		}
		for _, ev := range evs {
			all = append(all, parkedJSON(t.name, ev))
		}
	}
	if x.o.json {
		if all == nil {
			all = []ParkedJSON{}
		}
		return x.emit(all)
	}
	if len(all) == 0 {
		_, err := fmt.Fprintln(x.out, "no parked events")
		return err
	}
	w := tabwriter.NewWriter(x.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PROJECTION\tPOSITION\tSTREAM\tVERSION\tEVENT\tCAUSE\tATTEMPTS\tPARKED AT\tREASON")
	for _, p := range all {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\n", p.Projection, p.Position, p.Event.StreamID, p.Event.StreamVersion,
			p.Event.Name, p.Cause, p.Attempts, p.ParkedAt.Format(time.RFC3339), oneLine(p.Reason))
	}
	return w.Flush()
}

func runParkedShow(ctx context.Context, x *exec, args []string) error {
	pos, err := ParsePosition(args[0])
	if err != nil {
		return x.usage(err)
	}
	t, err := x.target(ctx, x.o.projection)
	if err != nil {
		return err
	}
	o, err := x.open(ctx, t, false)
	if err != nil {
		return err
	}
	ev, err := o.admin.Show(ctx, pos)
	if err != nil {
		return err
	}
	if x.o.json {
		return x.emit(parkedJSON(t.name, ev))
	}
	b, err := json.MarshalIndent(parkedJSON(t.name, ev), "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(x.out, "%s\n", b)
	return err
}

// ResolveJSON is what parked replay and skip print.
type ResolveJSON struct {
	Projection string   `json:"projection"`
	Action     string   `json:"action"`
	Position   string   `json:"position"`
	StreamID   string   `json:"stream_id"`
	Name       string   `json:"name"`
	Released   []string `json:"released"`
	Blocked    string   `json:"blocked,omitempty"`
	BlockedErr string   `json:"blocked_error,omitempty"`
}

func runResolve(ctx context.Context, x *exec, args []string, replay bool) error {
	pos, err := ParsePosition(args[0])
	if err != nil {
		return x.usage(err)
	}
	t, err := x.target(ctx, x.o.projection)
	if err != nil {
		return err
	}
	o, err := x.open(ctx, t, false)
	if err != nil {
		return err
	}
	by := x.o.by
	if by == "" {
		by = defaultBy()
	}
	var out readmodel.Outcome
	action := "skipped"
	if replay {
		action = "replayed"
		out, err = o.admin.Replay(ctx, pos, by, x.o.note)
	} else {
		out, err = o.admin.Skip(ctx, pos, by, x.o.note)
	}
	if err != nil {
		return err
	}
	r := ResolveJSON{Projection: t.name, Action: action, Position: pos.String(), StreamID: out.Event.StreamID,
		Name: out.Event.Name, Released: []string{}}
	for _, p := range out.Released {
		r.Released = append(r.Released, p.String())
	}
	if out.Blocked != nil {
		r.Blocked, r.BlockedErr = out.Blocked.Position.String(), fmt.Sprint(out.BlockedErr)
	}
	if x.o.json {
		return x.emit(r)
	}
	fmt.Fprintf(x.out, "%s %s %s (%s v%d %s)", t.name, action, pos, out.Event.StreamID, out.Event.StreamVersion, out.Event.Name)
	if len(r.Released) > 0 {
		fmt.Fprintf(x.out, "; released %d held event(s): %s", len(r.Released), strings.Join(r.Released, " "))
	}
	if out.Blocked != nil {
		fmt.Fprintf(x.out, "; held event %s failed and stays parked: %v", r.Blocked, out.BlockedErr)
	}
	_, err = fmt.Fprintln(x.out)
	return err
}

// defaultBy names the OS user and host, for the record of a resolution.
func defaultBy() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil {
		name += "@" + h
	}
	return name + " (esmill)"
}
