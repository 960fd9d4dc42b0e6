package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/esmill/esmill/internal/testservice"
)

func TestMain(m *testing.M) { os.Exit(testservice.Main(m)) }

// The example runs as the README shows, on the embedded server and on a
// real SierraDB.
func TestExample(t *testing.T) {
	for _, tg := range testservice.SierraTargets() {
		t.Run(tg.Name, func(t *testing.T) {
			addr := ""
			if tg.Real {
				addr = tg.Addr(t)
			}
			var out bytes.Buffer
			if err := run(&out, addr, ""); err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			for _, want := range []string{
				"bob tries to withdraw 80: rejected=true insufficient_funds=true",
				"bob deposits 25: idempotent=false version=2",
				"the same deposit redelivered: idempotent=true version=2",
				"alice transfers 20 to bob: bob credited by the transfers reactor, now at version 3",
				"alice transfers 10 to carol, who has no account: refunded, alice has 50",
				"the reactor ran 2 commands, each caused by its debit",
				"  Alice   50\n  Bob     95\n",
			} {
				if !strings.Contains(out.String(), want) {
					t.Fatalf("output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}
