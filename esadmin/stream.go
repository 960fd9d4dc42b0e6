package esadmin

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"

	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/sierradb"
)

func streamCommand() *command {
	return &command{
		name: "stream", short: "print a stream's events, decoded",
		long: `Read streams.`,
		sub: []*command{{
			name: "show", args: "STREAM_ID", short: "print a stream's events, decoded as JSON", nargs: 1, conn: sierraFlags,
			long: `Print the events of stream STREAM_ID in version order, each decoded as
JSON: its payload (CBOR or JSON, as esmill and kameo_es write it) and its
metadata (command, causation, correlation and command ids, trace context).
With --json each event is one line.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.Uint64Var(&o.from, "from", 0, "first stream `version` to print")
				fs.IntVar(&o.limit, "limit", 0, "print at most `n` events (0: all)")
			},
			run: runStreamShow,
		}},
	}
}

func tailCommand() *command {
	return &command{
		name: "tail", args: "CATEGORY", short: "follow a category's new events, decoded as JSON", nargs: 1, conn: sierraFlags,
		long: `Follow the events of the streams of CATEGORY (the part of a stream id
before its first '-') as they are appended, each printed as one line of
JSON (payload and metadata decoded), until interrupted or --count events
were printed.`,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.BoolVar(&o.fromStart, "from-start", false, "print the category's stored events first")
			fs.IntVar(&o.count, "count", 0, "stop after `n` events (0: never)")
		},
		run: runTail,
	}
}

func (x *exec) printEvent(ev sierradb.Event) error {
	d := DecodeEvent(ev)
	if x.o.json {
		return x.emit(d)
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(x.out, "%s\n", b)
	return err
}

func runStreamShow(ctx context.Context, x *exec, args []string) error {
	if err := sierradb.ValidateStreamID(args[0]); err != nil {
		return err
	}
	client, err := x.sierra(ctx)
	if err != nil {
		return err
	}
	n := 0
	for ev, err := range client.ScanAll(ctx, args[0], x.o.from) {
		if err != nil {
			return fmt.Errorf("read stream %s: %w", args[0], err)
		}
		if err := x.printEvent(ev); err != nil {
			return err
		}
		n++
		if x.o.limit > 0 && n == x.o.limit {
			break
		}
	}
	if n == 0 && !x.o.json {
		return fmt.Errorf("stream %s has no events from version %d", args[0], x.o.from)
	}
	return nil
}

func runTail(ctx context.Context, x *exec, args []string) error {
	category := args[0]
	client, err := x.sierra(ctx)
	if err != nil {
		return err
	}
	start := sierradb.StartLatest
	if x.o.fromStart {
		start = sierradb.StartBeginning
	}
	sub, err := client.SubscribePartitions(ctx, sierradb.PartitionSubscription{Default: start})
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	defer sub.Close()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.Done():
			return fmt.Errorf("the subscription ended: %w", sub.Err())
		case ev, ok := <-sub.Events():
			if !ok {
				<-sub.Done()
				return fmt.Errorf("the subscription ended: %w", sub.Err())
			}
			sub.Ack(ev)
			if readmodel.Category(ev.StreamID) != category {
				continue
			}
			if err := x.printEvent(ev); err != nil {
				return err
			}
			n++
			if x.o.count > 0 && n >= x.o.count {
				return nil
			}
		}
	}
}
