// Package sierradbcontainer runs SierraDB in Docker for tests, in the style
// of the testcontainers-go modules: the "containers" tier of esmill's three
// ways to test, beside package embedded (in process, no services) and
// package sierradbtest (the sierradb binary as a child process).
//
//	ctr, err := sierradbcontainer.Run(ctx, sierradbcontainer.DefaultImage,
//		sierradbcontainer.WithPartitions(8))
//	defer testcontainers.TerminateContainer(ctr)
//	client, err := ctr.Client(ctx) // an esmill *sierradb.Client
//
// [Run] starts the real SierraDB from an image with the official image's
// layout (tqwewe/sierradb: port 9090, data in /app/data, arguments after the
// entry point are the server's). [RunEmbedded] starts esmill's embedded
// server from the image that cmd/sierradb-embedded's Dockerfile builds.
// Both return a [*Container], wait until the server answers HELLO as
// SierraDB on the published port (not just until the port accepts), and
// take the same options: [WithPartitions], [WithDataVolume], [WithLogLevel]
// (real server only), [WithHostPort], and any testcontainers
// ContainerCustomizer.
//
// A stopped container keeps its data when it is started again
// (Container.Stop, then Container.Start; the published port changes unless
// [WithHostPort] fixed it). [WithDataVolume] keeps the data in a named
// Docker volume that outlives the container, so a new container on the same
// volume finds the events of the old one.
//
// [RunT] and [RunEmbeddedT] start a container for one test and terminate it
// with the test:
//
//	func TestOrders(t *testing.T) {
//		ctr := sierradbcontainer.RunT(t, sierradbcontainer.DefaultImage)
//		client, err := ctr.Client(context.Background())
//		...
//	}
//
// Without a Docker engine, or without the image (nothing to
// pull it from), they skip the test with the reason, or fail it under
// CI=true (the rule of sierradbtest.Unavailable); any other failure fails
// the test with the container's output.
//
// This package is a module of its own (github.com/esmill/esmill/sierradb/
// sierradbcontainer), so that testcontainers-go and the Docker client stay
// out of the dependency graph of programs that use esmill.
//
// testcontainers-go honours two variables worth knowing: Ryuk, its reaper,
// is an image from a registry, so without one set
// TESTCONTAINERS_RYUK_DISABLED=true (and terminate what you start); and a
// process that runs inside a container (a /.dockerenv file) reaches
// published ports through the default gateway unless
// TESTCONTAINERS_HOST_OVERRIDE names the host to use, such as 127.0.0.1.
package sierradbcontainer
