package integration_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// workers are worker processes of examples/twoprocess.
type workers struct {
	cmds []*exec.Cmd
	logs []string
	done []chan error
}

// startWorkers builds examples/twoprocess/worker and starts n of them on
// the services, each with its output in a file, and waits until each says
// it is ready.
func startWorkers(t *testing.T, svc *services, n int) *workers {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "worker")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/esmill/esmill/examples/twoprocess/worker").CombinedOutput(); err != nil {
		t.Fatalf("go build worker: %v\n%s", err, out)
	}
	w := &workers{}
	t.Cleanup(w.kill)
	for i := range n {
		logPath := filepath.Join(dir, "worker"+strconv.Itoa(i)+".log")
		f, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-sierradb", svc.sierraURL, "-redis", svc.redisAddr, "-postgres", svc.pgDSN)
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Start(); err != nil {
			f.Close()
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait(); f.Close() }()
		w.cmds, w.logs, w.done = append(w.cmds, cmd), append(w.logs, logPath), append(w.done, done)
		if err := w.waitReady(i, time.Minute); err != nil {
			t.Fatalf("worker %d: %v\n%s", i, err, w.output(i))
		}
	}
	return w
}

func (w *workers) output(i int) string {
	b, _ := os.ReadFile(w.logs[i])
	return string(b)
}

// waitReady waits for worker i's "worker ready" line, or its exit.
func (w *workers) waitReady(i int, timeout time.Duration) error {
	deadline := time.After(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(w.output(i), "worker ready") {
		select {
		case err := <-w.done[i]:
			w.done[i] <- err
			return errExited{err}
		case <-deadline:
			return errTimeout(timeout)
		case <-tick.C:
		}
	}
	return nil
}

// stop asks every worker to stop (SIGTERM) and checks that each exits
// cleanly, having stayed up through the restarts.
func (w *workers) stop(t *testing.T) {
	t.Helper()
	for i, cmd := range w.cmds {
		select {
		case err := <-w.done[i]:
			w.done[i] <- err
			t.Errorf("worker %d exited during the test: %v\n%s", i, err, w.output(i))
			continue
		default:
		}
		terminate(cmd)
	}
	for i := range w.cmds {
		select {
		case err := <-w.done[i]:
			w.done[i] <- err
			if err != nil {
				t.Errorf("worker %d exited with %v\n%s", i, err, w.output(i))
			}
		case <-time.After(30 * time.Second):
			t.Errorf("worker %d did not stop within 30 s of SIGTERM\n%s", i, w.output(i))
		}
	}
}

// kill ends any worker still running and waits for it.
func (w *workers) kill() {
	for i, cmd := range w.cmds {
		cmd.Process.Kill()
		err := <-w.done[i]
		w.done[i] <- err
	}
}

type errExited struct{ err error }

func (e errExited) Error() string { return "exited before it was ready: " + errString(e.err) }

type errTimeout time.Duration

func (e errTimeout) Error() string { return "not ready after " + time.Duration(e).String() }

func errString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
