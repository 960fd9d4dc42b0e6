// Package twoprocess_test runs the example end to end: three worker
// processes in a lease group and a sender process, against a real
// SierraDB, Redis and PostgreSQL.
package twoprocess_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/esmill/esmill/internal/testservice"
)

func TestMain(m *testing.M) { os.Exit(testservice.Main(m)) }

func build(t *testing.T, dir, pkg string) string {
	t.Helper()
	bin := filepath.Join(dir, filepath.Base(pkg))
	out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

func TestTwoProcesses(t *testing.T) {
	sierra := testservice.RequireSierraDB(t)
	rds := testservice.RequireRedis(t)
	pg := testservice.RequirePostgres(t)
	if testing.Short() {
		t.Skip("builds and runs two programs")
	}
	dir := t.TempDir()
	worker := build(t, dir, "github.com/esmill/esmill/examples/twoprocess/worker")
	sender := build(t, dir, "github.com/esmill/esmill/examples/twoprocess/sender")

	// Start three workers: a lease group dividing the partitions. Each
	// worker has one goroutine that collects its output lines (it calls
	// nothing on t), then waits for it to exit and reports the exit on a
	// channel; the cleanup kills the worker and joins that goroutine, then
	// logs the lines from the test's goroutine.
	type workerProc struct {
		signal func(os.Signal) error
		exited chan error // the exit, once
		done   chan struct{}
	}
	var workers []*workerProc
	var mu sync.Mutex
	held := make([]string, 3) // each worker's last "holds partitions" line
	metricsURL := make([]string, 3)
	for i := range 3 {
		cmd := exec.Command(worker, "-sierradb", sierra, "-redis", rds, "-postgres", pg, "-lease-ttl", "2s")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		w := &workerProc{signal: cmd.Process.Signal, exited: make(chan error, 1), done: make(chan struct{})}
		workers = append(workers, w)
		ready := make(chan bool, 1)
		var lines []string
		go func() {
			defer close(w.done)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				mu.Lock()
				lines = append(lines, sc.Text())
				if p, ok := strings.CutPrefix(sc.Text(), "worker holds partitions "); ok {
					held[i] = p
				}
				if u, ok := strings.CutPrefix(sc.Text(), "metrics on "); ok {
					metricsURL[i] = u
				}
				mu.Unlock()
				if sc.Text() == "worker ready" {
					ready <- true
				}
			}
			w.exited <- cmd.Wait()
		}()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-w.done
			mu.Lock()
			defer mu.Unlock()
			for _, l := range lines {
				t.Logf("worker %d: %s", i, l)
			}
		})
		select {
		case <-ready:
		case <-time.After(60 * time.Second):
			t.Fatalf("worker %d did not get ready", i)
		}
	}

	prefix := "acct" + time.Now().Format("150405")
	out, err := exec.Command(sender, "-redis", rds, "-accounts", "4", "-deposits", "15", "-prefix", prefix).CombinedOutput()
	t.Logf("sender:\n%s", out)
	if err != nil {
		t.Fatalf("sender: %v", err)
	}
	if !strings.Contains(string(out), "overdraft rejected") || !strings.Contains(string(out), "all in order") || !strings.Contains(string(out), "sender done") {
		t.Fatal("sender output incomplete")
	}

	// The projection catches up: 150 deposited and 145 withdrawn each.
	conn, err := pgx.Connect(context.Background(), pg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	want := map[string]int64{prefix + "-0": 5, prefix + "-1": 5, prefix + "-2": 5, prefix + "-3": 5}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := map[string]int64{}
		rows, err := conn.Query(context.Background(), `SELECT id, balance FROM balances WHERE id LIKE $1`, prefix+"-%")
		if err == nil {
			for rows.Next() {
				var id string
				var b int64
				if err := rows.Scan(&id, &b); err != nil {
					t.Fatal(err)
				}
				got[id] = b
			}
			rows.Close()
		}
		if mapsEqual(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("balances in PostgreSQL %v, want %v (%v)", got, want, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The group is stable: the workers hold the 8 partitions between
	// them, each once.
	deadline = time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		owned, err := partitionsHeld(held)
		mu.Unlock()
		if err == nil && len(owned) == 8 {
			t.Logf("partitions held: %v", held)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions held by the workers: %v (%v)", held, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Each worker serves its metrics on a loopback port: commands by
	// outcome, partitions held, the projection's lag (reported by the
	// workers that hold some of its partitions).
	lagSeries := 0
	for i := range workers {
		mu.Lock()
		u := metricsURL[i]
		mu.Unlock()
		resp, err := http.Get(u)
		if err != nil {
			t.Fatalf("worker %d metrics at %q: %v", i, u, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		lagSeries += strings.Count(string(body), "\nesmill_projection_lag{")
		for _, m := range []string{"esmill_router_partitions", "esmill_projection_events_total"} {
			if !strings.Contains(string(body), m) {
				t.Errorf("worker %d metrics lack %s:\n%s", i, m, body)
			}
		}
		if i == 0 {
			for _, l := range strings.Split(string(body), "\n") {
				if strings.HasPrefix(l, "esmill_commands_total") || strings.HasPrefix(l, "esmill_router_partitions") {
					t.Logf("worker 0: %s", l)
				}
			}
		}
	}

	if lagSeries == 0 {
		t.Error("no worker reports the projection's lag")
	}

	// The workers stop cleanly on SIGTERM.
	for i, w := range workers {
		w.signal(syscall.SIGTERM)
		select {
		case err := <-w.exited:
			if err != nil {
				t.Fatalf("worker %d exited with %v", i, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("worker %d did not stop", i)
		}
	}
}

// partitionsHeld parses the workers' "[0 3 5]" lines and checks that no
// partition is held twice.
func partitionsHeld(lines []string) ([]int, error) {
	var all []int
	for _, l := range lines {
		for _, f := range strings.Fields(strings.Trim(l, "[]")) {
			p, err := strconv.Atoi(f)
			if err != nil {
				return nil, err
			}
			if slices.Contains(all, p) {
				return nil, errors.New("partition " + f + " held twice")
			}
			all = append(all, p)
		}
	}
	return all, nil
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
