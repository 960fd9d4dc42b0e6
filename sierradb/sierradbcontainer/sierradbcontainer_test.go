package sierradbcontainer_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/esmill/esmill/internal/leakcheck"

	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/sierradbcontainer"
	"github.com/esmill/esmill/sierradb/sierradbtest"
)

// Images come from .ci/images/build; without the variables the tests use the
// official image (real server) or skip (embedded; fail under CI=true).
const (
	envImage         = "ESMILL_SIERRADB_IMAGE"
	envEmbeddedImage = "ESMILL_SIERRADB_EMBEDDED_IMAGE"
)

func TestMain(m *testing.M) {
	// No registry here: Ryuk (an image from one) is off, and every test
	// terminates what it starts. This machine has a /.dockerenv file, so
	// without the override testcontainers would reach published ports
	// through the default gateway instead of loopback.
	setDefault("TESTCONTAINERS_RYUK_DISABLED", "true")
	setDefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
	os.Exit(leakcheck.Main(m))
}

func setDefault(key, value string) {
	if os.Getenv(key) == "" {
		os.Setenv(key, value)
	}
}

// flavor is one of the two servers the module runs.
type flavor struct {
	name  string
	image func(t *testing.T) string
	run   func(t sierradbcontainer.Tester, img string, opts ...testcontainers.ContainerCustomizer) *sierradbcontainer.Container
	runE  func(ctx context.Context, img string, opts ...testcontainers.ContainerCustomizer) (*sierradbcontainer.Container, error)
}

var flavors = []flavor{
	{"sierradb", realImage, sierradbcontainer.RunT, sierradbcontainer.Run},
	{"embedded", embeddedImage, sierradbcontainer.RunEmbeddedT, sierradbcontainer.RunEmbedded},
}

func realImage(*testing.T) string {
	if img := os.Getenv(envImage); img != "" {
		return img
	}
	return sierradbcontainer.DefaultImage
}

func embeddedImage(t *testing.T) string {
	img := os.Getenv(envEmbeddedImage)
	if img == "" {
		sierradbtest.Unavailable(t, "$%s names no image (build one with .ci/images/build embedded)", envEmbeddedImage)
	}
	return img
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

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
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

func client(t *testing.T, ctr *sierradbcontainer.Container) *sierradb.Client {
	t.Helper()
	c, err := ctr.Client(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func appendN(t *testing.T, c *sierradb.Client, stream string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		_, err := c.Append(ctxT(t), sierradb.NewEvent{
			StreamID: stream, Name: "Counted", ExpectedVersion: sierradb.ExpectAfter(int64(i) - 1),
			Payload: []byte(fmt.Sprint(i)),
		})
		if err != nil {
			t.Fatalf("append %d to %s: %v", i, stream, err)
		}
	}
}

// readAll returns the payloads of a stream, in order.
func readAll(t *testing.T, c *sierradb.Client, stream string) []string {
	t.Helper()
	var out []string
	for ev, err := range c.ScanAll(ctxT(t), stream, 0) {
		if err != nil {
			t.Fatalf("read %s: %v", stream, err)
		}
		out = append(out, string(ev.Payload))
	}
	return out
}

func wantPayloads(t *testing.T, got []string, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("stream holds %d events %v, want %d", len(got), got, n)
	}
	for i, p := range got {
		if p != fmt.Sprint(i) {
			t.Fatalf("event %d holds %q, want %d: %v", i, p, i, got)
		}
	}
}

// Start, connect, append and read, and follow a subscription from history
// into live events.
func TestAppendReadSubscribe(t *testing.T) {
	for _, f := range flavors {
		t.Run(f.name, func(t *testing.T) {
			ctr := f.run(t, f.image(t), sierradbcontainer.WithPartitions(8), sierradbcontainer.WithHostPort(0), testOpts(t))
			c := client(t, ctr)
			info, err := c.Hello(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			if info.Server != "sierradb" || info.NumPartitions != 8 {
				t.Fatalf("HELLO = %+v, want sierradb with 8 partitions", info)
			}
			addr, _ := ctr.Address(ctxT(t))
			url, _ := ctr.ConnectionString(ctxT(t))
			if !strings.HasPrefix(addr, "127.0.0.1:") || url != "redis://"+addr {
				t.Fatalf("Address %q, ConnectionString %q", addr, url)
			}

			stream := "ctr-" + f.name
			appendN(t, c, stream, 0, 3)
			wantPayloads(t, readAll(t, c, stream), 3)

			sub, err := c.SubscribeStream(ctxT(t), stream, sierradb.StartBeginning)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			next := func() string {
				select {
				case ev := <-sub.Events():
					sub.Ack(ev)
					return string(ev.Payload)
				case <-sub.Done():
					t.Fatalf("subscription ended: %v", sub.Err())
				case <-time.After(30 * time.Second):
					t.Fatal("no event within 30 s")
				}
				return ""
			}
			for i := range 3 {
				if p := next(); p != fmt.Sprint(i) {
					t.Fatalf("history event %d = %q", i, p)
				}
			}
			appendN(t, c, stream, 3, 1)
			if p := next(); p != "3" {
				t.Fatalf("live event = %q, want 3", p)
			}
		})
	}
}

// A container stopped and started again keeps its data and, with a fixed
// host port, its address; a new container on the same volume finds the
// events of the old one.
func TestRestartWithVolumeKeepsData(t *testing.T) {
	for _, f := range flavors {
		t.Run(f.name, func(t *testing.T) {
			img := f.image(t)
			volume := fmt.Sprintf("esmill-test-%s-%d", f.name, time.Now().UnixNano())
			port := freePort(t)
			ctr := f.run(t, img, sierradbcontainer.WithDataVolume(volume), sierradbcontainer.WithHostPort(port), testOpts(t))
			c := client(t, ctr)
			stream := "restart-" + f.name
			appendN(t, c, stream, 0, 5)

			if err := ctr.Stop(ctxT(t), nil); err != nil {
				t.Fatal(err)
			}
			if err := ctr.Start(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			addr, err := ctr.Address(ctxT(t))
			if err != nil || addr != fmt.Sprintf("127.0.0.1:%d", port) {
				t.Fatalf("after a restart the address is %q (%v), want port %d", addr, err, port)
			}
			// The same client: it reconnects to the fixed port.
			wantPayloads(t, readAll(t, c, stream), 5)
			appendN(t, c, stream, 5, 2)
			if err := testcontainers.TerminateContainer(ctr); err != nil {
				t.Fatal(err)
			}

			again := f.run(t, img, sierradbcontainer.WithDataVolume(volume), sierradbcontainer.WithHostPort(0), testOpts(t))
			t.Cleanup(func() {
				// The volume goes with the last container.
				if err := testcontainers.TerminateContainer(again, testcontainers.RemoveVolumes(volume)); err != nil {
					t.Errorf("remove volume %s: %v", volume, err)
				}
			})
			wantPayloads(t, readAll(t, client(t, again), stream), 7)
		})
	}
}

// containerLogs returns everything the container wrote.
func containerLogs(t *testing.T, ctr *sierradbcontainer.Container) string {
	t.Helper()
	r, err := ctr.Logs(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	return string(b)
}

// WithLogLevel reaches the real server; the embedded server refuses it.
func TestLogLevel(t *testing.T) {
	img := realImage(t)
	quiet := sierradbcontainer.RunT(t, img, sierradbcontainer.WithLogLevel("warn"), sierradbcontainer.WithHostPort(0), testOpts(t))
	loud := sierradbcontainer.RunT(t, img, sierradbcontainer.WithHostPort(0), testOpts(t))
	if logs := containerLogs(t, loud); !strings.Contains(logs, "ready to receive connections") {
		t.Fatalf("default log level: no INFO line in\n%s", logs)
	}
	if logs := containerLogs(t, quiet); strings.Contains(logs, "ready to receive connections") {
		t.Fatalf("log level warn: an INFO line in\n%s", logs)
	}
	_, err := sierradbcontainer.RunEmbedded(ctxT(t), "unused", sierradbcontainer.WithLogLevel("warn"))
	if err == nil || !strings.Contains(err.Error(), "no log level") {
		t.Fatalf("RunEmbedded with WithLogLevel = %v", err)
	}
}

// fakeT records what RunT does to a test.
type fakeT struct {
	testing.TB
	skipped, failed string
	cleanups        []func()
}

func (f *fakeT) Helper()                           {}
func (f *fakeT) Errorf(format string, args ...any) { f.failed += fmt.Sprintf(format, args...) }
func (f *fakeT) Fatalf(format string, args ...any) { f.failed += fmt.Sprintf(format, args...) }
func (f *fakeT) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }
func (f *fakeT) Cleanup(fn func())                 { f.cleanups = append(f.cleanups, fn) }
func (f *fakeT) done() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// A server that cannot start fails the test with its output, locally too.
func TestFailedStartFailsWithOutput(t *testing.T) {
	t.Setenv("CI", "")
	for _, tc := range []struct {
		f    flavor
		arg  string
		want string
	}{
		{flavors[0], "--no-such-flag", "no-such-flag"},
		{flavors[1], "-no-such-flag", "no-such-flag"},
	} {
		t.Run(tc.f.name, func(t *testing.T) {
			img := tc.f.image(t)
			if err := sierradbcontainer.ImageAvailable(ctxT(t), img); err != nil {
				sierradbtest.Unavailable(t, "%v", err)
			}
			f := &fakeT{}
			ctr := tc.f.run(f, img, testcontainers.WithCmdArgs(tc.arg), sierradbcontainer.WithStartupTimeout(30*time.Second), testOpts(t))
			f.done()
			if ctr != nil || f.skipped != "" || !strings.Contains(f.failed, "before SierraDB answered") || !strings.Contains(f.failed, tc.want) {
				t.Fatalf("container %v, skipped %q, failed %q; want a failure with the server's output", ctr, f.skipped, f.failed)
			}
		})
	}
}

// An image that is not there (nothing to pull it from) skips locally and
// fails under CI=true.
func TestMissingImageSkipsOrFails(t *testing.T) {
	if err := sierradbcontainer.DockerAvailable(ctxT(t)); err != nil {
		sierradbtest.Unavailable(t, "%v", err)
	}
	for _, ci := range []string{"", "true"} {
		t.Run("CI="+ci, func(t *testing.T) {
			t.Setenv("CI", ci)
			f := &fakeT{}
			ctr := sierradbcontainer.RunT(f, "esmill.invalid/no-such-image:never")
			f.done()
			if ctr != nil {
				t.Fatal("RunT returned a container for a missing image")
			}
			if ci == "" && (f.skipped == "" || f.failed != "") || ci == "true" && (f.failed == "" || f.skipped != "") {
				t.Fatalf("skipped %q, failed %q", f.skipped, f.failed)
			}
			if !strings.Contains(f.skipped+f.failed, "no-such-image") {
				t.Fatalf("the reason does not name the image: %q %q", f.skipped, f.failed)
			}
		})
	}
}

// Without a Docker engine RunT skips locally and fails under CI=true. Each
// case runs in a child test binary that cannot see the engine: DOCKER_HOST
// points nowhere and, as root, the default socket is hidden in a mount
// namespace of its own.
func TestNoDockerSkipsOrFails(t *testing.T) {
	if os.Getenv("SIERRADBCONTAINER_CHILD") != "" {
		sierradbcontainer.RunT(t, sierradbcontainer.DefaultImage)
		t.Fatal("RunT returned without a Docker engine")
	}
	const socket = "/var/run/docker.sock"
	var wrap []string
	if _, err := os.Stat(socket); err == nil {
		if os.Geteuid() != 0 {
			t.Skip("hiding the Docker socket from a child needs root (a mount namespace)")
		}
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			t.Skip("hiding the Docker socket from a child needs unshare(1)")
		}
		wrap = []string{unshare, "--mount", "sh", "-c", `mount --bind /dev/null ` + socket + ` && exec "$0" "$@"`}
	}
	for _, ci := range []string{"", "true"} {
		t.Run("CI="+ci, func(t *testing.T) {
			args := append(wrap, os.Args[0], "-test.run=^TestNoDockerSkipsOrFails$", "-test.v")
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Env = append(os.Environ(), "SIERRADBCONTAINER_CHILD=1", "CI="+ci,
				"DOCKER_HOST=unix://"+t.TempDir()+"/no-docker.sock", "HOME="+t.TempDir(), "XDG_RUNTIME_DIR="+t.TempDir())
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			switch {
			case ci == "" && (err != nil || !strings.Contains(out.String(), "--- SKIP") || !strings.Contains(out.String(), "no Docker engine")):
				t.Fatalf("without CI: %v\n%s", err, out.String())
			case ci == "true" && (err == nil || !strings.Contains(out.String(), "required service unavailable under CI=true") ||
				!strings.Contains(out.String(), "no Docker engine")):
				t.Fatalf("under CI: %v\n%s", err, out.String())
			}
		})
	}
}
