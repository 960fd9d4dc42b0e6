// Command projector runs the crash tests' projection (package crashproj)
// until it is killed, or with -until-synced until it has caught up.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/esmill/esmill/test/internal/crashproj"
)

func main() {
	var o crashproj.Options
	flag.StringVar(&o.Kind, "store", "", "file, sqlite, postgres or mongodb")
	flag.StringVar(&o.Target, "target", "", "directory, database file, DSN or MongoDB URI")
	flag.StringVar(&o.Database, "database", "", "MongoDB database")
	flag.StringVar(&o.SierraAddr, "sierra", "", "SierraDB address")
	flag.StringVar(&o.Name, "name", "crash", "projection name")
	flag.IntVar(&o.BatchSize, "batch", 100, "batch size")
	untilSynced := flag.Bool("until-synced", false, "exit once caught up")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := crashproj.Run(ctx, o, *untilSynced); err != nil {
		fmt.Fprintln(os.Stderr, "projector:", err)
		os.Exit(1)
	}
	if *untilSynced {
		fmt.Println("synced")
	}
}
