// Command sierradb-embedded runs the in-process SierraDB-compatible server of
// package embedded as a standalone program, for local development and for
// tests that need a server in another process.
//
//	sierradb-embedded [-addr 127.0.0.1:9090] [-dir path] [-partitions 32] [-relaxed-versioning]
//
// Without -dir the events are kept in memory and lost on exit. The program
// logs "ready to receive connections on <addr>" once it listens and stops
// cleanly on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/esmill/esmill/sierradb/embedded"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sierradb-embedded:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("sierradb-embedded", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9090", "TCP address to listen on")
	dir := fs.String("dir", "", "data directory (default: keep events in memory)")
	partitions := fs.Uint("partitions", 32, "number of partitions, 1 to 65535")
	relaxed := fs.Bool("relaxed-versioning", false, "accept EXPECTED_VERSION any and exists (strict by default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *partitions < 1 || *partitions > 65535 {
		return fmt.Errorf("-partitions must be between 1 and 65535, got %d", *partitions)
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	srv, err := embedded.Start(embedded.Config{
		Addr:              *addr,
		Dir:               *dir,
		PartitionCount:    uint16(*partitions),
		RelaxedVersioning: *relaxed,
		Logger:            logger,
	})
	if err != nil {
		return err
	}
	logger.Info("ready to receive connections on " + srv.Addr())
	<-ctx.Done()
	logger.Info("shutting down")
	if err := srv.Close(); err != nil {
		return err
	}
	logger.Info("goodbye :)")
	return nil
}
