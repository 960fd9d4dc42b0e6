//go:build linux

package sierracluster

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if !Enabled() {
		os.Exit(code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	Sweep(ctx)
	cancel()
	os.Exit(code)
}
