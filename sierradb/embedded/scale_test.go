package embedded_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// The scale benchmark's data set: single-event transactions with 84-byte
// payloads in streams of 100 events, appended round-robin over the streams
// (so a stream's events are spread over its partition's log, as the events
// of many live entities are).
const (
	scaleChildEnv    = "EMBEDDED_SCALE_CHILD" // "dir:<path>" or "mem"
	scaleEventsEnv   = "EMBEDDED_SCALE_EVENTS"
	scalePayloadSize = 84
	scaleStreamLen   = 100
	scalePartitions  = 32
	scaleWorkload    = 3 * time.Second
)

func scaleEvents() int {
	if n, err := strconv.Atoi(os.Getenv(scaleEventsEnv)); err == nil && n >= scaleStreamLen {
		return n
	}
	return 5_000_000
}

func scaleStream(i int) string { return fmt.Sprintf("scale-%07d", i) }

// scaleSeed yields the data set's events in append order.
func scaleSeed(n int) func(*embedded.SeedEvent) bool {
	streams := n / scaleStreamLen
	payload := []byte(strings.Repeat("p", scalePayloadSize))
	base := time.Now()
	i := 0
	return func(e *embedded.SeedEvent) bool {
		if i >= streams*scaleStreamLen {
			return false
		}
		s := scaleStream(i % streams)
		*e = embedded.SeedEvent{Key: sierradb.StreamPartitionKey(s), StreamID: s, Name: "Ev", Payload: payload,
			Time: base.Add(time.Duration(i) * time.Microsecond)}
		i++
		return true
	}
}

// scaleReport is what a child process measured.
type scaleReport struct {
	Events        int
	StartupSec    float64 // Start on the directory (directory mode); seeding (memory mode)
	RSSBase       int64   // before Start
	RSSStarted    int64   // right after Start
	RSSSteady     int64   // after a GC returned the garbage to the OS
	RSSWithCache  int64   // after the read workloads, GC'd: index plus a full cache
	CacheBytes    int64   // held by the block cache (INFO CACHE memory_bytes) at RSSWithCache
	ReadEventsPS  float64 // ESCAN of whole streams
	ScanEventsPS  float64 // EPSCAN of 1000 events
	AppendEventPS float64 // EAPPEND from 16 connections
}

func rss() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func settledRSS() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	return rss()
}

// runScaleChild opens (or seeds) a server, measures it and prints a JSON
// scaleReport on stdout.
func runScaleChild(mode string) {
	n := scaleEvents()
	var rep scaleReport
	rep.Events = n / scaleStreamLen * scaleStreamLen
	rep.RSSBase = settledRSS()
	var srv *embedded.Server
	var err error
	start := time.Now()
	if dir, ok := strings.CutPrefix(mode, "dir:"); ok {
		srv, err = embedded.Start(embedded.Config{Dir: dir, PartitionCount: scalePartitions, MaxConnections: 64})
	} else {
		srv, err = embedded.Start(embedded.Config{PartitionCount: scalePartitions})
		if err == nil {
			next := scaleSeed(n)
			var e embedded.SeedEvent
			for next(&e) {
				if _, err = srv.AppendStream(e.StreamID, e.Name, e.Payload); err != nil {
					break
				}
			}
		}
	}
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	rep.StartupSec = time.Since(start).Seconds()
	rep.RSSStarted = rss()
	rep.RSSSteady = settledRSS()
	streams := rep.Events / scaleStreamLen
	rep.ReadEventsPS = scaleLoad(srv.Addr(), 8, func(r *rand.Rand) []string {
		return []string{"ESCAN", scaleStream(r.IntN(streams)), "-", "+", "COUNT", "100"}
	})
	perPartition := rep.Events / scalePartitions
	rep.ScanEventsPS = scaleLoad(srv.Addr(), 8, func(r *rand.Rand) []string {
		return []string{"EPSCAN", strconv.Itoa(r.IntN(scalePartitions)), strconv.Itoa(r.IntN(max(1, perPartition-1000))), "+", "COUNT", "1000"}
	})
	rep.RSSWithCache = settledRSS()
	rep.CacheBytes = cacheBytes(srv.Addr())
	rep.AppendEventPS = scaleLoad(srv.Addr(), 16, func(r *rand.Rand) []string {
		return []string{"EAPPEND", "append-" + uuid.NewString(), "Ev", "EXPECTED_VERSION", "empty", "PAYLOAD", strings.Repeat("a", scalePayloadSize)}
	})
	srv.Close()
	json.NewEncoder(os.Stdout).Encode(rep)
}

// cacheBytes asks INFO CACHE for the bytes the block cache holds.
func cacheBytes(addr string) int64 {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0
	}
	defer c.Close()
	w := resp3.NewWriter(c)
	w.WriteCommand("INFO", "CACHE")
	if w.Flush() != nil {
		return 0
	}
	v, err := resp3.NewReader(c).ReadValue()
	if err != nil {
		return 0
	}
	m, _ := v.MapGet("memory_bytes")
	return m.Int
}

// scaleLoad runs a request workload from `workers` connections for
// scaleWorkload and returns the events read or written per second.
func scaleLoad(addr string, workers int, req func(*rand.Rand) []string) float64 {
	var events atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(scaleWorkload)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			rd, wr := resp3.NewReader(c), resp3.NewWriter(c)
			for time.Now().Before(deadline) {
				wr.WriteCommand(req(r)...)
				if wr.Flush() != nil {
					return
				}
				v, err := rd.ReadValue()
				if err != nil {
					return
				}
				if evs, ok := v.MapGet("events"); ok {
					events.Add(int64(evs.Len()))
				} else if v.Type == resp3.Map {
					events.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return float64(events.Load()) / scaleWorkload.Seconds()
}

// runScaleChildProcess runs the test binary as a scale child.
func runScaleChildProcess(b *testing.B, mode string, n int) scaleReport {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), scaleChildEnv+"="+mode, scaleEventsEnv+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("scale child %s: %v\n%s", mode, err, out)
	}
	var rep scaleReport
	if err := json.Unmarshal(out, &rep); err != nil {
		b.Fatalf("scale child %s said %q: %v", mode, out, err)
	}
	return rep
}

// BenchmarkDirectoryScale measures directory mode at scale against memory
// mode, each in a fresh child process: resident memory per stored event
// (directory mode: beyond the block cache), start-up time per million events
// (against reading the same log files), and ESCAN, EPSCAN and EAPPEND
// throughput. EMBEDDED_SCALE_EVENTS sets the size (default 5,000,000). It
// runs once whatever b.N is.
func BenchmarkDirectoryScale(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads resident memory from /proc")
	}
	n := scaleEvents()
	dir := b.TempDir()
	t0 := time.Now()
	if err := embedded.SeedDir(dir, scalePartitions, scaleSeed(n)); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d events in %s", n, time.Since(t0).Round(time.Millisecond))
	// Baseline for start-up: reading the logs, as warm as Start finds them.
	t0 = time.Now()
	var size int64
	files, _ := filepath.Glob(filepath.Join(dir, "partition-*.log"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			b.Fatal(err)
		}
		m, _ := io.Copy(io.Discard, fh)
		fh.Close()
		size += m
	}
	rawSec := time.Since(t0).Seconds()
	d := runScaleChildProcess(b, "dir:"+dir, n)
	m := runScaleChildProcess(b, "mem", n)
	mil := float64(d.Events) / 1e6
	dirPerEvent := float64(d.RSSSteady-d.RSSBase) / float64(d.Events)
	dirBeyondCache := float64(d.RSSWithCache-d.RSSBase-d.CacheBytes) / float64(d.Events)
	memPerEvent := float64(m.RSSSteady-m.RSSBase) / float64(m.Events)
	b.Logf("%d events, %d MiB of logs: directory mode starts in %.2f s (%.2f s per million; reading the files takes %.2f s), "+
		"RSS %.1f B/event right after start, %.1f B/event settled, %.1f B/event beyond the cache (holding %d MiB); "+
		"memory mode %.1f B/event", d.Events, size>>20, d.StartupSec, d.StartupSec/mil, rawSec,
		float64(d.RSSStarted-d.RSSBase)/float64(d.Events), dirPerEvent, dirBeyondCache, d.CacheBytes>>20, memPerEvent)
	b.Logf("directory vs memory: ESCAN %.0f vs %.0f events/s, EPSCAN %.0f vs %.0f events/s, EAPPEND %.0f vs %.0f events/s",
		d.ReadEventsPS, m.ReadEventsPS, d.ScanEventsPS, m.ScanEventsPS, d.AppendEventPS, m.AppendEventPS)
	report := func(name string, metrics map[string]float64) {
		b.Run(name, func(b *testing.B) {
			for k, v := range metrics {
				b.ReportMetric(v, k)
			}
			b.ReportMetric(0, "ns/op")
		})
	}
	report("directory", map[string]float64{
		"startup-s/Mevents": d.StartupSec / mil, "rss-B/event": dirBeyondCache, "rss-settled-B/event": dirPerEvent,
		"escan-events/s": d.ReadEventsPS, "epscan-events/s": d.ScanEventsPS, "eappend-events/s": d.AppendEventPS,
	})
	report("memory", map[string]float64{
		"rss-B/event": memPerEvent, "escan-events/s": m.ReadEventsPS, "epscan-events/s": m.ScanEventsPS, "eappend-events/s": m.AppendEventPS,
	})
	report("read-files", map[string]float64{"startup-s/Mevents": rawSec / mil})
}
