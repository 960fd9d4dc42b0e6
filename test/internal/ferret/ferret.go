// Package ferret runs FerretDB (embedded as a library in the ferretserver
// program, with its SQLite backend in a temporary directory) as the
// MongoDB-compatible server of the tests. FerretDB has no multi-document
// transactions, which is what the MongoDB read-model store must cope with.
// The server runs in a process of its own, built once per test binary, so
// that it runs at full speed when the tests run under the race detector.
package ferret

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/esmill/esmill/internal/testservice"
)

// Server is a running FerretDB.
type Server struct {
	URI  string
	proc *testservice.Process
	dir  string
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds the ferretserver program once per test binary.
func Binary() (string, error) {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "esmill-ferretserver-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ferretserver")
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", binPath,
			"github.com/esmill/esmill/test/internal/ferret/ferretserver")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ferretserver: %w\n%s", err, out)
		}
	})
	return binPath, buildErr
}

// Start starts FerretDB on a free loopback port, storing its data in a new
// temporary directory.
func Start() (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "esmill-ferretdb-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 {
		port, err := testservice.FreePort()
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		proc, err := testservice.StartProcess(dir, bin, []string{"-addr", addr, "-dir", dir}, nil)
		if err != nil {
			return nil, err
		}
		err = proc.WaitReady(context.Background(), 30*time.Second, func(ctx context.Context) error {
			return ownFerret(ctx, addr, proc.Pid())
		})
		if err != nil {
			proc.Kill()
			lastErr = err
			continue
		}
		return &Server{URI: "mongodb://" + addr + "/", proc: proc, dir: dir}, nil
	}
	os.RemoveAll(dir)
	return nil, fmt.Errorf("starting ferretserver: %w", lastErr)
}

// ownFerret checks that the server at addr speaks the MongoDB protocol and
// is process pid (serverStatus reports the pid of the FerretDB process): the
// server started here, not another one that took the port.
func ownFerret(ctx context.Context, addr string, pid int) error {
	c, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + addr + "/").
		SetServerSelectionTimeout(time.Second).SetDirect(true))
	if err != nil {
		return err
	}
	defer c.Disconnect(context.Background())
	var status struct {
		PID     int64  `bson:"pid"`
		Process string `bson:"process"`
	}
	if err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "serverStatus", Value: 1}}).Decode(&status); err != nil {
		return err
	}
	if status.PID != int64(pid) {
		return fmt.Errorf("the server at %s is process %d (%s), not the FerretDB started here (pid %d)", addr, status.PID, status.Process, pid)
	}
	return nil
}

// Close stops the server and removes its data.
func (s *Server) Close() {
	s.proc.Stop(10 * time.Second)
	os.RemoveAll(s.dir)
}

var (
	mu     sync.Mutex
	shared *Server
)

// Require returns the URI of a FerretDB shared by the test binary (stopped
// by [StopAll]). Tests share it: give each its own database. FerretDB is
// built from this module rather than found on PATH, so a failure to start
// it fails the test instead of skipping it.
func Require(t testing.TB) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if shared == nil {
		s, err := Start()
		if err != nil {
			t.Fatalf("FerretDB: %v", err)
		}
		shared = s
	}
	return shared.URI
}

// StopAll stops the shared server.
func StopAll() {
	mu.Lock()
	defer mu.Unlock()
	if shared != nil {
		shared.Close()
		shared = nil
	}
}
