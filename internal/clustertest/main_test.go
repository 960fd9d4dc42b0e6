//go:build linux

package clustertest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/esmill/esmill/internal/sierracluster"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sierracluster.Enabled() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		sierracluster.Sweep(ctx)
		cancel()
	}
	os.Exit(code)
}
