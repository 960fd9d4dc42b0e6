// Command ferretserver runs FerretDB, embedded as a library, with its
// SQLite backend in a directory: the MongoDB-compatible server of the
// tests, run in a process of its own so that it is not built with the
// race detector of the tests.
//
//	ferretserver -addr 127.0.0.1:27017 -dir /tmp/data
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:27017", "TCP address to listen on")
	dir := flag.String("dir", "", "data directory (required)")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "ferretserver: -dir is required")
		os.Exit(2)
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *addr},
		Handler:  "sqlite",
		// WAL without an fsync per write: durable against a crash of
		// the processes the tests kill, which are not this one.
		SQLiteURL: "file:" + *dir + "/?_pragma=synchronous(normal)",
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferretserver:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Println("listening on", *addr)
	f.Run(ctx)
}
