//go:build linux

package sierracluster

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/esmill/esmill/internal/leakcheck"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if Enabled() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		Sweep(ctx)
		cancel()
	}
	os.Exit(leakcheck.After(code))
}
