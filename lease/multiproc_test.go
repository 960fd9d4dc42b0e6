//go:build linux

package lease_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/lease"
)

// The child side of TestMultiProcessExclusive: a process that joins a
// group and, while it holds a partition, writes a line per 5ms of work
// ("<partition> <token> <unix nanos> <instance>") to its log.

func childMain() int {
	args := strings.Split(os.Getenv(childEnv), ",") // addr, prefix, group, instance, partitions, log
	partitions, _ := strconv.Atoi(args[4])
	logf, err := os.OpenFile(args[5], os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	rdb := redis.NewClient(&redis.Options{Addr: args[0]})
	defer rdb.Close()
	w := &worker{instance: args[3], log: logf, running: make(map[int]*job)}
	m, err := lease.Join(lease.Config{
		Store: lease.NewRedisStore(rdb, args[1]), Group: args[2], Instance: args[3], Partitions: partitions,
		TTL: time.Second, RenewInterval: 150 * time.Millisecond, StopMargin: 300 * time.Millisecond,
	}, w)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	w.m.Store(m)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case <-m.Done():
	}
	m.Close()
	w.wg.Wait()
	if err := m.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

type worker struct {
	instance string
	log      *os.File
	m        atomic.Pointer[lease.Member]
	wg       sync.WaitGroup
	mu       sync.Mutex
	running  map[int]*job
}

type job struct{ stop, done chan struct{} }

func (w *worker) Assigned(p int, token uint64) {
	j := &job{stop: make(chan struct{}), done: make(chan struct{})}
	w.mu.Lock()
	w.running[p] = j
	w.mu.Unlock()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer close(j.done)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			now := time.Now()
			if m := w.m.Load(); m != nil && m.Valid(p, token) {
				fmt.Fprintf(w.log, "%d %d %d %s\n", p, token, now.UnixNano(), w.instance)
			}
			select {
			case <-j.stop:
				return
			case <-t.C:
			}
		}
	}()
}

func (w *worker) Revoked(p int) {
	w.mu.Lock()
	j := w.running[p]
	delete(w.running, p)
	w.mu.Unlock()
	if j != nil {
		close(j.stop)
		<-j.done
	}
}

type workLine struct {
	partition int
	token     uint64
	at        int64
	instance  string
}

// Three processes in one group, SIGKILLed, stopped and restarted at
// random, one joining late: at no moment do two of them work on one
// partition, and at the end every partition has exactly one worker.
func TestMultiProcessExclusive(t *testing.T) {
	addr := testservice.RequireRedis(t)
	dir := t.TempDir()
	prefix := fmt.Sprintf("multiproc-%d:", time.Now().UnixNano())
	const partitions = 16
	type proc struct {
		cmd      *exec.Cmd
		instance string
		exited   chan struct{}
	}
	var (
		procs []*proc
		seq   int
	)
	start := func() *proc {
		seq++
		inst := fmt.Sprintf("p%d", seq)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+strings.Join([]string{addr, prefix, "workers", inst, strconv.Itoa(partitions), filepath.Join(dir, inst+".log")}, ","))
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := &proc{cmd: cmd, instance: inst, exited: make(chan struct{})}
		go func() { cmd.Wait(); close(p.exited) }()
		return p
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	procs = append(procs, start(), start())
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills, stops := 0, 0
	chaosEnd := time.Now().Add(12 * time.Second)
	late := time.Now().Add(3 * time.Second)
	for time.Now().Before(chaosEnd) {
		time.Sleep(time.Duration(400+rng.IntN(1200)) * time.Millisecond)
		if !late.IsZero() && time.Now().After(late) {
			procs = append(procs, start())
			late = time.Time{}
			continue
		}
		i := rng.IntN(len(procs))
		victim := procs[i]
		if rng.IntN(3) == 0 {
			victim.cmd.Process.Signal(syscall.SIGTERM)
			stops++
		} else {
			victim.cmd.Process.Kill()
			kills++
		}
		<-victim.exited
		procs[i] = start()
	}
	// Let the group settle: a killed member's leases end after the TTL.
	time.Sleep(3 * time.Second)
	settleTo := time.Now().UnixNano()
	settleFrom := settleTo - int64(500*time.Millisecond)
	for _, p := range procs {
		p.cmd.Process.Signal(syscall.SIGTERM)
		<-p.exited
	}
	procs = nil

	var lines []workLine
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var l workLine
			if _, err := fmt.Sscanf(sc.Text(), "%d %d %d %s", &l.partition, &l.token, &l.at, &l.instance); err != nil {
				continue // a line cut by SIGKILL
			}
			lines = append(lines, l)
		}
		fh.Close()
	}
	slices.SortFunc(lines, func(a, b workLine) int {
		if a.at != b.at {
			if a.at < b.at {
				return -1
			}
			return 1
		}
		return 0
	})
	last := make(map[int]workLine)
	overlaps, handovers := 0, 0
	finalOwners := make(map[int]map[string]bool)
	for _, l := range lines {
		prev, ok := last[l.partition]
		switch {
		case !ok:
		case l.token < prev.token, l.token == prev.token && l.instance != prev.instance:
			overlaps++
			if overlaps <= 5 {
				t.Errorf("partition %d: %s worked under token %d at %d after %s under token %d at %d",
					l.partition, l.instance, l.token, l.at, prev.instance, prev.token, prev.at)
			}
		case l.token > prev.token:
			handovers++
		}
		if l.token >= prev.token {
			last[l.partition] = l
		}
		if l.at >= settleFrom && l.at <= settleTo {
			if finalOwners[l.partition] == nil {
				finalOwners[l.partition] = make(map[string]bool)
			}
			finalOwners[l.partition][l.instance] = true
		}
	}
	unowned, shared := 0, 0
	for p := range partitions {
		switch n := len(finalOwners[p]); {
		case n == 0:
			unowned++
		case n > 1:
			shared++
		}
	}
	t.Logf("%d processes started, %d SIGKILLed, %d stopped; %d work lines, %d handovers; overlaps %d; at the end: %d partitions without a worker, %d with several",
		seq, kills, stops, len(lines), handovers, overlaps, unowned, shared)
	if overlaps > 0 || unowned > 0 || shared > 0 {
		t.Fatalf("overlaps %d, unowned %d, shared %d: want 0, 0, 0", overlaps, unowned, shared)
	}
	if kills == 0 || handovers == 0 {
		t.Fatalf("the chaos did nothing: %d kills, %d handovers", kills, handovers)
	}
}
