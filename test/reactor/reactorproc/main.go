// Command reactorproc runs the crash tests' reactor (package crashreact)
// until it is killed, or with -until-synced until it has caught up.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/esmill/esmill/test/internal/crashreact"
)

func main() {
	var o crashreact.Options
	flag.StringVar(&o.Kind, "store", "", "file, sqlite or postgres")
	flag.StringVar(&o.Target, "target", "", "directory, database file or DSN")
	flag.StringVar(&o.SierraAddr, "sierra", "", "SierraDB address")
	flag.StringVar(&o.Name, "name", "react", "reactor name")
	flag.StringVar(&o.Instance, "instance", "0", "instance name, for the log")
	flag.DurationVar(&o.LeaseTTL, "ttl", 0, "share the partitions under leases with this TTL (0: every instance works on every partition)")
	untilSynced := flag.Bool("until-synced", false, "exit once caught up")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	report := func(s string) { fmt.Println(s) }
	if err := crashreact.Run(ctx, o, *untilSynced, report); err != nil {
		fmt.Fprintln(os.Stderr, "reactorproc:", err)
		os.Exit(1)
	}
	if *untilSynced {
		fmt.Println("synced")
	}
}
