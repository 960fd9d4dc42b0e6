package integration_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"

	"github.com/esmill/esmill/sierradb/sierradbcontainer"
	"github.com/esmill/esmill/sierradb/sierradbtest"
)

// The images: the official ones by default; CI names the ones it built
// (.ci/images/build), since it has no registry to pull from.
func images() (sierra, redis, postgres string) {
	return env("ESMILL_SIERRADB_IMAGE", sierradbcontainer.DefaultImage),
		env("ESMILL_REDIS_IMAGE", "redis:7"),
		env("ESMILL_POSTGRES_IMAGE", "postgres:15")
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// services are the three containers of the suite.
type services struct {
	sierra    *sierradbcontainer.Container
	sierraURL string // host:port, fixed across restarts
	redis     *tcredis.RedisContainer
	redisAddr string // host:port, fixed across restarts
	pgDSN     string
}

// startServices starts SierraDB, Redis and PostgreSQL, each published on
// loopback only. SierraDB and Redis get fixed host ports, so that a restart
// leaves them where the workers expect them, and keep their data across a
// restart: SierraDB in a volume, Redis in an append-only file fsynced on
// every write.
func startServices(t *testing.T) *services {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sierraImg, redisImg, pgImg := images()
	for _, img := range []string{sierraImg, redisImg, pgImg} {
		if err := sierradbcontainer.ImageAvailable(ctx, img); err != nil {
			sierradbtest.Unavailable(t, "%v", err)
		}
	}
	s := &services{}

	volume := "esmill-integration-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	sierraPort := freePort(t)
	sierra, err := sierradbcontainer.Run(ctx, sierraImg,
		sierradbcontainer.WithDataVolume(volume), sierradbcontainer.WithHostPort(sierraPort), testOpts(t))
	cleanup(t, sierra, testcontainers.RemoveVolumes(volume))
	if err != nil {
		t.Fatal(err)
	}
	s.sierra = sierra
	if s.sierraURL, err = sierra.Address(ctx); err != nil {
		t.Fatal(err)
	}

	redisPort := freePort(t)
	rds, err := tcredis.Run(ctx, redisImg,
		testcontainers.WithCmdArgs("--appendonly", "yes", "--appendfsync", "always"),
		loopbackPort("6379/tcp", redisPort), testOpts(t))
	cleanup(t, rds)
	if err != nil {
		t.Fatal(err)
	}
	s.redis = rds
	s.redisAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(redisPort))

	pg, err := tcpostgres.Run(ctx, pgImg,
		tcpostgres.WithDatabase("bank"), tcpostgres.WithUsername("bank"), tcpostgres.WithPassword("bank"),
		tcpostgres.BasicWaitStrategies(), loopbackPort("5432/tcp", 0), testOpts(t))
	cleanup(t, pg)
	if err != nil {
		t.Fatal(err)
	}
	if s.pgDSN, err = pg.ConnectionString(ctx, "sslmode=disable"); err != nil {
		t.Fatal(err)
	}
	return s
}

// cleanup terminates a container (if one was created) when the test ends.
func cleanup(t *testing.T, ctr testcontainers.Container, opts ...testcontainers.TerminateOption) {
	t.Helper()
	t.Cleanup(func() {
		if err := testcontainers.TerminateContainer(ctr, opts...); err != nil {
			t.Errorf("terminate container: %v", err)
		}
	})
}

// loopbackPort publishes a container port on 127.0.0.1 only, at hostPort
// (0: a port Docker picks).
func loopbackPort(containerPort string, hostPort int) testcontainers.CustomizeRequestOption {
	return testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
		if hc.PortBindings == nil {
			hc.PortBindings = network.PortMap{}
		}
		hc.PortBindings[network.MustParsePort(containerPort)] = []network.PortBinding{{
			HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(hostPort),
		}}
	})
}

// testOpts marks the containers of one CI run, so that .ci/run can remove
// any that a crashed test binary left behind, and sends testcontainers' log
// lines to the test's log.
func testOpts(t *testing.T) testcontainers.CustomizeRequestOption {
	return func(req *testcontainers.GenericContainerRequest) error {
		req.Logger = tclog.TestLogger(t)
		return testcontainers.WithLabels(map[string]string{"esmill.ci.run": os.Getenv("ESMILL_CI_RUN")})(req)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// restart stops a container and starts it again once stopped returns;
// Start waits until the service answers again.
func restart(ctr testcontainers.Container, stopped func()) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	timeout := 10 * time.Second
	if err := ctr.Stop(ctx, &timeout); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	stopped()
	if err := ctr.Start(ctx); err != nil {
		return fmt.Errorf("start again: %w", err)
	}
	return nil
}
