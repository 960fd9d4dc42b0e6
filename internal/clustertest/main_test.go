//go:build linux

package clustertest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/esmill/esmill/internal/sierracluster"
	"github.com/esmill/esmill/internal/testservice"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(workerEnv); spec != "" {
		os.Exit(workerMain(spec))
	}
	code := testservice.Main(m)
	if sierracluster.Enabled() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		sierracluster.Sweep(ctx)
		cancel()
	}
	os.Exit(code)
}
