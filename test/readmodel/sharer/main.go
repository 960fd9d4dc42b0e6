// Command sharer runs one instance of the multi-process sharing tests'
// projection (package sharedproj) until it is killed or interrupted.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/esmill/esmill/test/internal/sharedproj"
)

func main() {
	var o sharedproj.Options
	flag.StringVar(&o.Kind, "store", "", "file, sqlite or postgres")
	flag.StringVar(&o.Target, "target", "", "directory, database file or DSN")
	flag.StringVar(&o.SierraAddr, "sierra", "", "SierraDB address")
	flag.StringVar(&o.Name, "name", "shared", "projection name")
	flag.StringVar(&o.Instance, "instance", "", "instance name")
	flag.IntVar(&o.BatchSize, "batch", 50, "batch size")
	flag.DurationVar(&o.LeaseTTL, "ttl", time.Second, "lease TTL")
	flag.StringVar(&o.StatusDir, "status", "", "directory of the status files")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := sharedproj.Run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "sharer:", err)
		os.Exit(1)
	}
}
