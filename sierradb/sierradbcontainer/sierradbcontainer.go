package sierradbcontainer

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/testcontainers/testcontainers-go"

	"github.com/esmill/esmill/sierradb"
)

const (
	// DefaultImage is the official SierraDB image of the version esmill is
	// tested against.
	DefaultImage = "tqwewe/sierradb:0.3.1"
	// Port is the client port inside the container.
	Port = "9090/tcp"
	// DataDir is where the server keeps its data inside the container.
	DataDir = "/app/data"
	// configPath is where Run puts the real server's configuration file.
	configPath = "/etc/sierradb/sierra.toml"
)

// Container is a running SierraDB container.
type Container struct {
	testcontainers.Container
	embedded bool
}

// Embedded reports whether the container runs esmill's embedded server
// rather than the real SierraDB.
func (c *Container) Embedded() bool { return c.embedded }

// Address returns the published client address, host:port, as
// sierradb.Config.Addr takes it. It changes when a container without
// [WithHostPort] is stopped and started again.
func (c *Container) Address(ctx context.Context) (string, error) {
	return c.PortEndpoint(ctx, Port, "")
}

// ConnectionString returns the client address as a RESP URL,
// redis://host:port, the form generic RESP3 clients (go-redis's ParseURL,
// redis-cli -u) take.
func (c *Container) ConnectionString(ctx context.Context) (string, error) {
	return c.PortEndpoint(ctx, Port, "redis")
}

// Client returns an esmill client connected to the container. The caller
// closes it.
func (c *Container) Client(ctx context.Context) (*sierradb.Client, error) {
	addr, err := c.Address(ctx)
	if err != nil {
		return nil, err
	}
	return sierradb.New(sierradb.Config{Addr: addr})
}

// Run starts the real SierraDB from img, an image with the official image's
// layout (DefaultImage, or one built like it), as a single node with no
// cluster networking, and waits until it answers HELLO on the published
// port. On error the container, if one was created, is returned too, so
// that the caller can terminate it.
func Run(ctx context.Context, img string, opts ...testcontainers.ContainerCustomizer) (*Container, error) {
	return run(ctx, img, false, opts)
}

// RunEmbedded starts esmill's embedded server from img, an image built from
// cmd/sierradb-embedded's Dockerfile, with its data in /app/data, and waits
// until it answers HELLO on the published port.
func RunEmbedded(ctx context.Context, img string, opts ...testcontainers.ContainerCustomizer) (*Container, error) {
	return run(ctx, img, true, opts)
}

func run(ctx context.Context, img string, embedded bool, opts []testcontainers.ContainerCustomizer) (*Container, error) {
	var o options
	for _, opt := range opts {
		if apply, ok := opt.(Option); ok {
			if err := apply(&o); err != nil {
				return nil, err
			}
		}
	}
	if err := o.validate(embedded); err != nil {
		return nil, err
	}
	moduleOpts := []testcontainers.ContainerCustomizer{
		testcontainers.WithExposedPorts(Port),
		testcontainers.WithWaitStrategy(&helloStrategy{timeout: o.startTimeout()}),
	}
	if embedded {
		cmd := []string{"-addr", "0.0.0.0:9090", "-dir", DataDir}
		if o.partitions > 0 {
			cmd = append(cmd, "-partitions", strconv.Itoa(o.partitions))
		}
		moduleOpts = append(moduleOpts, testcontainers.WithCmd(cmd...))
	} else {
		cmd := []string{"-c", configPath, "--dir", DataDir, "--client-address", "0.0.0.0:9090"}
		if o.logLevel != "" {
			cmd = append(cmd, "--log", o.logLevel)
		}
		moduleOpts = append(moduleOpts,
			testcontainers.WithCmd(cmd...),
			testcontainers.WithEnv(map[string]string{"NO_COLOR": "1"}),
			testcontainers.WithFiles(testcontainers.ContainerFile{
				Reader:            strings.NewReader(o.configFile()),
				ContainerFilePath: configPath,
				FileMode:          0o644,
			}),
		)
	}
	if o.volume != "" {
		moduleOpts = append(moduleOpts, testcontainers.WithMounts(
			testcontainers.VolumeMount(o.volume, testcontainers.ContainerMountTarget(DataDir))))
	}
	if o.hostPort != nil {
		moduleOpts = append(moduleOpts, loopbackPort(*o.hostPort))
	}
	moduleOpts = append(moduleOpts, opts...)

	ctr, err := testcontainers.Run(ctx, img, moduleOpts...)
	var c *Container
	if ctr != nil {
		c = &Container{Container: ctr, embedded: embedded}
	}
	if err != nil {
		return c, fmt.Errorf("sierradbcontainer: run %s: %w", img, err)
	}
	return c, nil
}

// configFile is the real server's configuration: one node, no cluster.
func (o options) configFile() string {
	var b strings.Builder
	b.WriteString("[network]\ncluster_enabled = false\n[replication]\nfactor = 1\n")
	if o.partitions > 0 {
		// The server needs at least as many partitions as buckets (4).
		fmt.Fprintf(&b, "[partition]\ncount = %d\n[bucket]\ncount = %d\n", o.partitions, min(o.partitions, 4))
	}
	return b.String()
}
