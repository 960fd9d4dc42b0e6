// Command sierradb-embedded runs the in-process SierraDB-compatible server of
// package embedded as a standalone program, for local development and for
// tests that need a server in another process.
//
//	sierradb-embedded [-addr 127.0.0.1:9090] [-dir path] [-partitions 32] [-relaxed-versioning]
//	                  [-cache-bytes 64MiB] [-salvage]
//	                  [-max-connections 1024] [-max-subscriptions-per-conn 256]
//	                  [-max-frame-bytes 32MiB] [-max-total-frame-bytes 64MiB]
//	                  [-frame-timeout 30s] [-idle-timeout 0]
//
// Without -dir the events are kept in memory and lost on exit. The program
// logs "ready to receive connections on <addr>" once it listens and stops
// cleanly on SIGINT or SIGTERM. With -salvage a directory whose logs are
// damaged opens with what precedes the damage; each log cut short is logged
// and printed on stderr as "damaged log salvaged: <log> at offset ...: dropped
// ..." with what was dropped.
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
	var cfg embedded.Config
	fs.Int64Var(&cfg.CacheBytes, "cache-bytes", embedded.DefaultCacheBytes, "directory mode: bytes of the block cache payloads are read through")
	fs.BoolVar(&cfg.Salvage, "salvage", false, "open damaged logs with what precedes the damage, saving and reporting the rest")
	fs.IntVar(&cfg.MaxConnections, "max-connections", embedded.DefaultMaxConnections, "most client connections")
	fs.IntVar(&cfg.MaxSubscriptionsPerConn, "max-subscriptions-per-conn", embedded.DefaultMaxSubscriptionsPerConn, "most subscriptions on one connection")
	fs.IntVar(&cfg.MaxFrameBytes, "max-frame-bytes", embedded.DefaultMaxFrameBytes, "most memory one request takes once decoded")
	fs.Int64Var(&cfg.MaxTotalFrameBytes, "max-total-frame-bytes", embedded.DefaultMaxTotalFrameBytes, "most memory the requests of all connections take once decoded")
	fs.DurationVar(&cfg.FrameTimeout, "frame-timeout", embedded.DefaultFrameTimeout, "time a client has to send a whole request once begun")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 0, "close connections idle this long (0: never)")
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
	cfg.Addr, cfg.Dir, cfg.PartitionCount, cfg.RelaxedVersioning, cfg.Logger = *addr, *dir, uint16(*partitions), *relaxed, logger
	srv, err := embedded.Start(cfg)
	if err != nil {
		return err
	}
	for _, a := range srv.Recovery() {
		if a.Kind == embedded.Salvaged {
			fmt.Fprintln(stderr, a)
		}
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
