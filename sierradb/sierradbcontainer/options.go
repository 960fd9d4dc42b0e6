package sierradbcontainer

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
)

// Option configures the SierraDB container. It is a
// testcontainers.ContainerCustomizer, so options mix with the generic ones.
type Option func(*options) error

// Customize is a no-op: Run reads Options before it builds the request.
func (o Option) Customize(*testcontainers.GenericContainerRequest) error { return nil }

type options struct {
	partitions int
	volume     string
	logLevel   string
	hostPort   *int
	timeout    time.Duration
}

func (o options) validate(embedded bool) error {
	if embedded && o.logLevel != "" {
		return errors.New("sierradbcontainer: WithLogLevel: the embedded server has no log level setting; use it with Run")
	}
	return nil
}

func (o options) startTimeout() time.Duration {
	if o.timeout > 0 {
		return o.timeout
	}
	return time.Minute
}

// WithPartitions sets the number of partitions, 1 to 65535 (default 32).
func WithPartitions(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 65535 {
			return fmt.Errorf("sierradbcontainer: WithPartitions(%d): want 1 to 65535", n)
		}
		o.partitions = n
		return nil
	}
}

// WithDataVolume keeps the server's data in the named Docker volume, created
// when missing. The volume outlives the container: a container started
// later on the same volume finds the events; remove it with
// testcontainers.RemoveVolumes when terminating the last container.
func WithDataVolume(name string) Option {
	return func(o *options) error {
		if name == "" {
			return errors.New("sierradbcontainer: WithDataVolume: empty volume name")
		}
		o.volume = name
		return nil
	}
}

// WithLogLevel sets the real server's log filter (its --log option), such
// as "warn" or "info,sierradb=debug". The embedded server has no such
// setting: RunEmbedded rejects this option.
func WithLogLevel(filter string) Option {
	return func(o *options) error {
		if filter == "" {
			return errors.New("sierradbcontainer: WithLogLevel: empty filter")
		}
		o.logLevel = filter
		return nil
	}
}

// WithHostPort publishes the client port on 127.0.0.1 only, at port (0: a
// port Docker picks). A fixed port stays the same when the container is
// stopped and started again, so clients reconnect where they were.
func WithHostPort(port int) Option {
	return func(o *options) error {
		if port < 0 || port > 65535 {
			return fmt.Errorf("sierradbcontainer: WithHostPort(%d): want 0 to 65535", port)
		}
		o.hostPort = &port
		return nil
	}
}

// WithStartupTimeout bounds the wait until the server answers (default one
// minute).
func WithStartupTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("sierradbcontainer: WithStartupTimeout(%s): want a positive duration", d)
		}
		o.timeout = d
		return nil
	}
}

// loopbackPort publishes Port on 127.0.0.1:hostPort.
func loopbackPort(hostPort int) testcontainers.CustomizeRequestOption {
	return testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
		if hc.PortBindings == nil {
			hc.PortBindings = network.PortMap{}
		}
		hc.PortBindings[network.MustParsePort(Port)] = []network.PortBinding{{
			HostIP:   netip.MustParseAddr("127.0.0.1"),
			HostPort: strconv.Itoa(hostPort),
		}}
	})
}
