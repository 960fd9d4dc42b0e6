package sierradbcontainer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"

	"github.com/esmill/esmill/sierradb/sierradbtest"
)

// Tester is the part of *testing.T (or *testing.B, testing.TB) that RunT
// uses: the same as sierradbtest's.
type Tester = sierradbtest.Tester

// ErrNoDocker is returned (wrapped) by [DockerAvailable] when no Docker
// engine answers.
var ErrNoDocker = errors.New("no Docker engine")

// ErrNoImage is returned (wrapped) by [ImageAvailable] when an image is
// neither on the Docker host nor pullable.
var ErrNoImage = errors.New("image not available")

// DockerAvailable checks that a Docker engine answers. The error wraps
// [ErrNoDocker].
func DockerAvailable(ctx context.Context) error {
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoDocker, err)
	}
	defer cli.Close()
	return nil
}

// ImageAvailable checks that img is on the Docker host, or else pulls it.
// The error wraps [ErrNoImage] (or [ErrNoDocker]).
func ImageAvailable(ctx context.Context, img string) error {
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoDocker, err)
	}
	defer cli.Close()
	_, err = cli.ImageInspect(ctx, img)
	if err == nil {
		return nil
	}
	if !errdefs.IsNotFound(err) {
		return fmt.Errorf("%w: inspecting %s: %v", ErrNoImage, img, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	res, err := cli.ImagePull(pctx, img, client.ImagePullOptions{})
	if err == nil {
		defer res.Close()
		err = res.Wait(pctx)
	}
	if err != nil {
		return fmt.Errorf("%w: %s is not on the Docker host and pulling it failed: %v", ErrNoImage, img, err)
	}
	if _, err := cli.ImageInspect(ctx, img); err != nil {
		return fmt.Errorf("%w: %s after pulling: %v", ErrNoImage, img, err)
	}
	return nil
}

// RunT starts the real SierraDB from img for a test (see [Run]) and
// terminates the container when the test ends. Without Docker or the image,
// the test is skipped with the reason, or failed under CI=true; any other
// failure fails it with the container's output.
func RunT(t Tester, img string, opts ...testcontainers.ContainerCustomizer) *Container {
	t.Helper()
	return runT(t, img, false, opts)
}

// RunEmbeddedT is [RunT] for esmill's embedded server image (see
// [RunEmbedded]).
func RunEmbeddedT(t Tester, img string, opts ...testcontainers.ContainerCustomizer) *Container {
	t.Helper()
	return runT(t, img, true, opts)
}

func runT(t Tester, img string, embedded bool, opts []testcontainers.ContainerCustomizer) *Container {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := ImageAvailable(ctx, img); err != nil {
		sierradbtest.Unavailable(t, "SierraDB container: %v", err)
		return nil
	}
	ctr, err := run(ctx, img, embedded, opts)
	if ctr != nil {
		t.Cleanup(func() {
			if err := testcontainers.TerminateContainer(ctr); err != nil {
				t.Errorf("sierradbcontainer: terminate: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("%v", err)
		return nil
	}
	return ctr
}
