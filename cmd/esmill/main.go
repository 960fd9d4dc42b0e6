// Command esmill administers esmill services: the progress of projections
// and reactors, their parked events, the poison topic of the command bus,
// and streams. Run "esmill -h" for its commands.
//
// It is package esadmin's command tree without registered projections: it
// can do everything that needs no projection code. A service embeds the
// same tree with its projections registered (esadmin.Projection) to
// replay parked events and rebuild projections too.
package main

import (
	"os"

	"github.com/esmill/esmill/esadmin"
)

func main() { os.Exit((&esadmin.App{}).Main()) }
