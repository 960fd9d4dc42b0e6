// Command esbench runs every esmill benchmark scenario, each next to its
// baseline in the same run, prints a table of ratios and writes it to a
// file (BENCHMARKS.md by default).
//
//	go run ./cmd/esbench [-quick] [-count 5] [-only pattern] [-out BENCHMARKS.md] [-json results.json]
//
// It drives `go test -bench -count N` in each package, so the figures are
// those of the packages' own benchmarks, read with golang.org/x/perf's
// benchfmt. Every benchmark runs N times (5 by default); run i of a
// scenario is compared with run i of its baseline (they ran one after the
// other), and a row gives the median of the N ratios with their minimum
// and maximum, so that the noise of a shared machine shows in the spread.
// -quick uses fewer iterations and smaller data sets (still N runs). A
// scenario whose service is missing (no sierradb binary, no redis-server,
// no PostgreSQL) is reported as skipped.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/perf/benchfmt"
)

// run is one `go test -bench` invocation.
type run struct {
	pkg       string
	bench     string
	benchtime string
	quick     string
	env       []string // added to the environment
	quickEnv  []string // added instead with -quick
	// interleave runs the package's benchmarks -count times with
	// -count 1, so that round i runs every scenario once, one after the
	// other, before round i+1: a slow spell of a shared machine then
	// falls on both sides of a ratio.
	interleave bool
}

// row compares a measured benchmark with its baseline from the same run.
type row struct {
	group    string
	label    string
	measured string
	baseline string
	metric   string
	// lowerIsBetter: the metric is a duration (ns/op) or a cost.
	lowerIsBetter bool
	// baselineMetric, when set, is the baseline's metric: a benchmark
	// that interleaves both sides in one run reports each under a metric
	// of its own (measured and baseline then name the same benchmark).
	baselineMetric string
}

// result is one benchmark of one `go test` run: its values per unit, one
// per -count run, in order.
type result struct {
	Name    string               `json:"name"`
	Metrics map[string][]float64 `json:"metrics"`
}

var runs = []run{
	{pkg: "./sierradb", bench: `^BenchmarkAppend$/^(embedded-dir|sierradb)$`, benchtime: "300x", quick: "40x"},
	{pkg: "./sierradb", bench: `^BenchmarkAppendMulti10$/^(embedded-dir|sierradb)$`, benchtime: "300x", quick: "40x"},
	{pkg: "./sierradb", bench: `^BenchmarkSubscribeCatchUp$/^(embedded-dir|sierradb)$`, benchtime: "2x", quick: "1x"},
	{pkg: "./cqrs", bench: `^BenchmarkCommands$`, benchtime: "2000x", quick: "200x"},
	{pkg: "./cqrs", bench: `^BenchmarkTransport$`, benchtime: "4000x", quick: "1000x", interleave: true},
	{pkg: "./aggregate", bench: `^BenchmarkHotEntities$`, benchtime: "1x", quick: "1x"},
	{pkg: "./aggregate", bench: `^BenchmarkGroupCommit$`, benchtime: "1x", quick: "1x"},
	{pkg: "./aggregate", bench: `^BenchmarkEntityMemory$`, benchtime: "1x", quick: "1x", quickEnv: []string{"ESMILL_QUICK=1"}},
	{pkg: "./cqrs", bench: `^BenchmarkObservability$`, benchtime: "60000x", quick: "4000x"},
	{pkg: "./aggregate", bench: `^BenchmarkRehydrate$`, benchtime: "5x", quick: "2x"},
	{pkg: "./aggregate", bench: `^BenchmarkFreshness$`, benchtime: "5000x", quick: "500x"},
	{pkg: "./internal/scaleout", bench: `^BenchmarkRouterProcesses$`, benchtime: "4000x", quick: "600x"},
	{pkg: "./sierradb/pubsub", bench: `^BenchmarkPublish$/(embedded|sierradb)/(adapter|raw)/(serial|batch10|goroutines16)$`, benchtime: "2s", quick: "300ms"},
	{pkg: "./sierradb/pubsub", bench: `^BenchmarkSubscribe$`, benchtime: "3x", quick: "1x"},
	{pkg: "./test/readmodel", bench: `^BenchmarkCatchUp$/^(subscription|postgres|postgres-queued)$`, benchtime: "1x", quick: "1x",
		quickEnv: []string{"ESMILL_CATCHUP_EVENTS=20000"}},
	{pkg: "./test/readmodel", bench: `^BenchmarkCatchUp$/^(subscription|memory|file|sqlite|mongodb-ferretdb)$`, benchtime: "1x", quick: "1x",
		quickEnv: []string{"ESMILL_CATCHUP_EVENTS=20000"}},
	// The cluster benchmarks need root (network namespaces); without it
	// their rows are skipped.
	{pkg: "./internal/clustertest", bench: `^BenchmarkCluster$/nodes=[13]/append`, benchtime: "300x", quick: "60x",
		env: []string{"ESMILL_CLUSTER_TESTS=1"}, quickEnv: []string{"ESMILL_CLUSTER_TESTS=1"}},
	{pkg: "./internal/clustertest", bench: `^BenchmarkCluster$/nodes=[13]/catchup`, benchtime: "2x", quick: "1x",
		env: []string{"ESMILL_CLUSTER_TESTS=1"}, quickEnv: []string{"ESMILL_CLUSTER_TESTS=1"}},
	{pkg: "./test/readmodel", bench: `^BenchmarkSharedCatchUp$`, benchtime: "1x", quick: "1x",
		quickEnv: []string{"ESMILL_SHARED_EVENTS=20000"}},
	{pkg: "./sierradb/embedded", bench: `^BenchmarkDirectoryScale$`, benchtime: "1x", quick: "1x",
		env: []string{"EMBEDDED_SCALE_EVENTS=5000000"}, quickEnv: []string{"EMBEDDED_SCALE_EVENTS=500000"},
		// It measures once per process (its sub-benchmarks report that
		// one measurement): -count runs of the process, not -count 5.
		interleave: true},
}

func rows() []row {
	var rs []row
	for _, n := range []int{1, 16, 64} {
		rs = append(rs,
			row{"SierraDB client (embedded server in directory mode, its own process, vs the real server)", fmt.Sprintf("EAPPEND, %d goroutines: embedded vs real", n),
				fmt.Sprintf("BenchmarkAppend/embedded-dir/goroutines=%d", n), fmt.Sprintf("BenchmarkAppend/sierradb/goroutines=%d", n), "events/s", false, ""},
			row{"SierraDB client (embedded server in directory mode, its own process, vs the real server)", fmt.Sprintf("EMAPPEND of 10, %d goroutines: embedded vs real", n),
				fmt.Sprintf("BenchmarkAppendMulti10/embedded-dir/goroutines=%d", n), fmt.Sprintf("BenchmarkAppendMulti10/sierradb/goroutines=%d", n), "events/s", false, ""},
		)
	}
	rs = append(rs, row{"SierraDB client (embedded server in directory mode, its own process, vs the real server)", "catch-up subscription, 100k events: embedded vs real",
		"BenchmarkSubscribeCatchUp/embedded-dir", "BenchmarkSubscribeCatchUp/sierradb", "events/s", false, ""})
	for _, srv := range []string{"embedded", "sierradb"} {
		for _, n := range []int{1, 16, 64} {
			base := fmt.Sprintf("BenchmarkCommands/%s/raw-emappend/callers=%d", srv, n)
			for _, m := range []struct{ label, name string }{
				{"executor", "executor"}, {"router over GoChannel", "router-gochannel"}, {"router over Redis Streams", "router-redisstream"},
			} {
				rs = append(rs, row{"Commands (" + srv + ")", fmt.Sprintf("%s vs raw EMAPPEND, %d callers", m.label, n),
					fmt.Sprintf("BenchmarkCommands/%s/%s/callers=%d", srv, m.name, n), base, "cmds/s", false, ""})
			}
		}
		rs = append(rs, row{"Rehydration (" + srv + ")", "10,000-event entity: snapshot vs events (time per load)",
			fmt.Sprintf("BenchmarkRehydrate/%s/snapshot", srv), fmt.Sprintf("BenchmarkRehydrate/%s/events", srv), "ns/op", true, ""})
	}
	const transport = "Command routing over Redis Streams (embedded server in process; 16 partition topics, 256 entities, pre-filled; interleaved rounds)"
	const (
		ceiling = "BenchmarkTransport/embedded/ceiling"
		part    = "BenchmarkTransport/embedded/esmill-redispart"
		window  = "BenchmarkTransport/embedded/esmill-redispart-window"
		stream  = "BenchmarkTransport/embedded/esmill-redisstream"
		wcqrs   = "BenchmarkTransport/embedded/watermill-cqrs"
	)
	rs = append(rs,
		row{transport, "command router over redispart, MaxInFlight 16 with cqrs.OrderKey (a topic's entities side by side), vs the transport ceiling (watermill-redisstream, handlers that return at once) (target ≥ 0.7)",
			window, ceiling, "cmds/s", false, ""},
		row{transport, "command router over redispart, one message of a topic at a time, vs the transport ceiling",
			part, ceiling, "cmds/s", false, ""},
		row{transport, "command router over redispart: MaxInFlight 16 vs one message at a time",
			window, part, "cmds/s", false, ""},
		row{transport, "command router over watermill-redisstream vs the transport ceiling", stream, ceiling, "cmds/s", false, ""},
		row{transport, "Watermill CQRS (CommandBus + CommandProcessor over watermill-redisstream, handler loads the stream and appends) vs the transport ceiling",
			wcqrs, ceiling, "cmds/s", false, ""},
		row{transport, "command router over redispart vs Watermill CQRS", part, wcqrs, "cmds/s", false, ""},
		row{transport, "command router over watermill-redisstream vs Watermill CQRS", stream, wcqrs, "cmds/s", false, ""},
		row{transport, "CPU per command of the benchmark process (router, executor, embedded server): router over redispart vs the transport ceiling",
			part, ceiling, "cpu-µs/cmd", true, ""},
		row{transport, "CPU per command of Redis: router over redispart vs the transport ceiling", part, ceiling, "redis-cpu-µs/cmd", true, ""},
		row{transport, "CPU per command of Redis: router over redispart, MaxInFlight 16 vs one message at a time (acks recorded together)", window, part, "redis-cpu-µs/cmd", true, ""},
		row{transport, "CPU per command of the benchmark process: router over redispart vs Watermill CQRS", part, wcqrs, "cpu-µs/cmd", true, ""})
	const hot = "Hot entities (cmd/sierradb-embedded in directory mode, its own process)"
	rs = append(rs,
		row{hot, "1,000 entities × 40 commands, 64 callers: executor vs raw EMAPPEND of the same requests (target ≥ 0.95)",
			"BenchmarkHotEntities/interleaved", "BenchmarkHotEntities/interleaved", "executor-cmds/s", false, "raw-cmds/s"},
		row{hot, "heap per busy entity (300 commands) vs per quiet entity (1 command); target busy ≤ 4,096 B",
			"BenchmarkEntityMemory/busy", "BenchmarkEntityMemory/quiet", "B/entity", true, ""},
		row{"Group commit (real SierraDB)", "64 entities sharing a partition key, 64 callers: WithGroupCommit vs one append per command (target ≥ 3)",
			"BenchmarkGroupCommit/group-commit", "BenchmarkGroupCommit/one-append-per-command", "cmds/s", false, ""},
		row{"Group commit (real SierraDB)", "64 callers: group commit's bound (one 64-event EMAPPEND after another, each event a caller's command) vs one append per command",
			"BenchmarkGroupCommit/bound", "BenchmarkGroupCommit/one-append-per-command", "cmds/s", false, ""},
		row{"Group commit (real SierraDB)", "64 callers: WithGroupCommit vs its bound",
			"BenchmarkGroupCommit/group-commit", "BenchmarkGroupCommit/bound", "cmds/s", false, ""})
	for _, m := range []struct{ label, name string }{{"executor", "executor"}, {"router over GoChannel", "router-gochannel"}} {
		bench := "BenchmarkObservability/embedded/" + m.name + "/callers=16"
		rs = append(rs,
			row{"Observability (embedded; on: SDK tracing, AlwaysSample, batcher to a discarding exporter, and SDK metrics with a manual reader; off: no-op providers; interleaved in each run)",
				m.label + ", 16 callers: throughput on vs off (target ≥ 0.9)", bench, bench, "on-cmds/s", false, "off-cmds/s"},
			row{"Observability (embedded; on: SDK tracing, AlwaysSample, batcher to a discarding exporter, and SDK metrics with a manual reader; off: no-op providers; interleaved in each run)",
				m.label + ", 16 callers: process CPU time per command, on vs off", bench, bench, "on-cpu-µs/cmd", true, "off-cpu-µs/cmd"})
	}
	rs = append(rs, row{"Observability (embedded; on: SDK tracing, AlwaysSample, batcher to a discarding exporter, and SDK metrics with a manual reader; off: no-op providers; interleaved in each run)",
		"executor, the floor: off's CPU per command plus the SDK's least cost for one command (a span with its attributes, a traceparent, three measurements, run alone) vs off",
		"BenchmarkObservability/embedded/executor/callers=16", "BenchmarkObservability/embedded/executor/callers=16", "best-on-cpu-µs/cmd", true, "off-cpu-µs/cmd"})
	for _, srv := range []string{"embedded", "sierradb"} {
		g := "Fresh answers (" + srv + ")"
		rs = append(rs,
			row{g, "rejection, 16 callers: stream read first (no fence) vs from a fenced cache", fmt.Sprintf("BenchmarkFreshness/%s/rejection/checked", srv),
				fmt.Sprintf("BenchmarkFreshness/%s/rejection/fenced", srv), "cmds/s", false, ""},
			row{g, "command that writes, 16 callers: cancellable context vs background", fmt.Sprintf("BenchmarkFreshness/%s/write/cancellable", srv),
				fmt.Sprintf("BenchmarkFreshness/%s/write/background", srv), "cmds/s", false, ""})
	}
	for _, srv := range []string{"embedded-process", "sierradb"} {
		g := "Scale-out over Redis Streams (redispart, 16 partitions; " + srv + ")"
		for _, n := range []int{1, 3} {
			rs = append(rs, row{g, fmt.Sprintf("%d worker process(es) in a lease group vs one router in the benchmark process", n),
				fmt.Sprintf("BenchmarkRouterProcesses/%s/processes=%d", srv, n), fmt.Sprintf("BenchmarkRouterProcesses/%s/single", srv), "cmds/s", false, ""})
		}
	}
	for _, srv := range []string{"embedded", "sierradb"} {
		for _, shape := range []string{"serial", "batch10", "goroutines16"} {
			rs = append(rs, row{"Watermill Pub/Sub adapter (" + srv + ")", "publish, " + shape + ": adapter vs raw client",
				fmt.Sprintf("BenchmarkPublish/%s/adapter/%s", srv, shape), fmt.Sprintf("BenchmarkPublish/%s/raw/%s", srv, shape), "msgs/s", false, ""})
		}
		rs = append(rs,
			row{"Watermill Pub/Sub adapter (" + srv + ")", "subscribe: adapter vs raw subscription",
				fmt.Sprintf("BenchmarkSubscribe/%s/adapter", srv), fmt.Sprintf("BenchmarkSubscribe/%s/raw", srv), "msgs/s", false, ""},
			row{"Watermill Pub/Sub adapter (" + srv + ")", "subscribe with a consumer group: adapter vs raw subscription",
				fmt.Sprintf("BenchmarkSubscribe/%s/adapter/group", srv), fmt.Sprintf("BenchmarkSubscribe/%s/raw", srv), "msgs/s", false, ""})
	}
	rs = append(rs,
		row{"SierraDB cluster (real 0.3.1, harness in network namespaces)", "EAPPEND, 16 goroutines: 3 nodes (RF 3, cluster client) vs 1 node",
			"BenchmarkCluster/nodes=3/append/goroutines=16", "BenchmarkCluster/nodes=1/append/goroutines=16", "events/s", false, ""},
		row{"SierraDB cluster (real 0.3.1, harness in network namespaces)", "catch-up subscription over every partition, 20k events: 3 nodes vs 1 node",
			"BenchmarkCluster/nodes=3/catchup", "BenchmarkCluster/nodes=1/catchup", "events/s", false, ""})
	const scale = "Embedded SierraDB, directory mode at scale (5,000,000 events of 84 bytes; -quick: 500,000)"
	for _, r := range []struct{ label, metric string }{
		{"ESCAN of 100-event streams: directory vs memory mode", "escan-events/s"},
		{"EPSCAN of 1000 events: directory vs memory mode", "epscan-events/s"},
		{"EAPPEND from 16 connections (fsync per append): directory vs memory mode", "eappend-events/s"},
	} {
		rs = append(rs, row{scale, r.label, "BenchmarkDirectoryScale/directory", "BenchmarkDirectoryScale/memory", r.metric, false, ""})
	}
	rs = append(rs,
		row{scale, "resident bytes per stored event: directory (beyond the block cache) vs memory mode",
			"BenchmarkDirectoryScale/directory", "BenchmarkDirectoryScale/memory", "rss-B/event", true, ""},
		row{scale, "start-up per million events: directory mode vs reading its log files",
			"BenchmarkDirectoryScale/directory", "BenchmarkDirectoryScale/read-files", "startup-s/Mevents", true, ""})
	const catchUp = "Projection catch-up (embedded SierraDB; 100,000 events, -quick: 20,000; MongoDB 1,000)"
	for _, batch := range []int{10, 100, 1000} {
		target := ""
		if batch == 1000 {
			target = " (target ≥ 2.0)"
		}
		rs = append(rs, row{catchUp, fmt.Sprintf("postgres, batch %d: statements queued (postgres.Queue) vs run one by one (tx.Exec)%s", batch, target),
			fmt.Sprintf("BenchmarkCatchUp/postgres-queued/batch=%d", batch), fmt.Sprintf("BenchmarkCatchUp/postgres/batch=%d", batch), "events/s", false, ""})
	}
	for _, store := range []string{"memory", "file", "sqlite", "postgres", "postgres-queued", "mongodb-ferretdb"} {
		for _, batch := range []int{10, 100, 1000} {
			rs = append(rs, row{catchUp, fmt.Sprintf("%s, batch %d: store vs raw subscription read", store, batch),
				fmt.Sprintf("BenchmarkCatchUp/%s/batch=%d", store, batch), "BenchmarkCatchUp/subscription", "events/s", false, ""})
		}
	}
	const shared = "Projection instances sharing the partitions (PostgreSQL, embedded SierraDB; 100,000 events, -quick: 20,000)"
	rs = append(rs,
		row{shared, "catch-up: 3 instances under leases vs 1 runner alone", "BenchmarkSharedCatchUp/instances=3", "BenchmarkSharedCatchUp/alone", "events/s", false, ""},
		row{shared, "catch-up: 1 instance under leases vs 1 runner alone", "BenchmarkSharedCatchUp/instances=1", "BenchmarkSharedCatchUp/alone", "events/s", false, ""})
	return rs
}

// parse reads `go test -bench` output with benchfmt into one map per run.
func parse(r io.Reader, out map[string]*result) error {
	br := benchfmt.NewReader(r, "go test")
	for br.Scan() {
		res, ok := br.Result().(*benchfmt.Result)
		if !ok {
			continue // a syntax error (a line of log output) or unit metadata
		}
		name := benchName(res.Name)
		rs := out[name]
		if rs == nil {
			rs = &result{Name: name, Metrics: map[string][]float64{}}
			out[name] = rs
		}
		for _, v := range res.Values {
			unit, value := v.Unit, v.Value
			if v.OrigUnit != "" {
				// benchfmt tidies ns/op into sec/op; the rows name the
				// units as the benchmarks print them.
				unit, value = v.OrigUnit, v.OrigValue
			}
			rs.Metrics[unit] = append(rs.Metrics[unit], value)
		}
	}
	return br.Err()
}

// benchName is a benchmark's full name without its GOMAXPROCS suffix, with
// the "Benchmark" prefix that benchfmt drops.
func benchName(n benchfmt.Name) string {
	base, parts := n.Parts()
	var b strings.Builder
	b.WriteString("Benchmark")
	b.Write(base)
	for _, p := range parts {
		if len(p) > 0 && p[0] == '-' {
			continue
		}
		b.Write(p)
	}
	return b.String()
}

// stats compares run i of measured with run i of baseline: the medians of
// both, and the median, minimum and maximum of the ratios.
type stats struct {
	measured, baseline float64
	median, lo, hi     float64
	runs               int
}

func compare(m, b []float64, lowerIsBetter bool) (stats, bool) {
	n := min(len(m), len(b))
	var ratios []float64
	for i := range n {
		if m[i] == 0 || b[i] == 0 {
			continue
		}
		r := m[i] / b[i]
		if lowerIsBetter {
			r = b[i] / m[i]
		}
		ratios = append(ratios, r)
	}
	if len(ratios) == 0 {
		return stats{}, false
	}
	slices.Sort(ratios)
	return stats{measured: median(m), baseline: median(b), median: median(ratios), lo: ratios[0], hi: ratios[len(ratios)-1], runs: len(ratios)}, true
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d CPUs, %s/%s, %s", cpu, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
}

func format(v float64, metric string) string {
	if metric == "ns/op" {
		return time.Duration(v).Round(time.Microsecond).String()
	}
	if v < 10 {
		return strconv.FormatFloat(v, 'f', 2, 64) + " " + metric
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " " + metric
}

func main() {
	quick := flag.Bool("quick", false, "fewer iterations and smaller data sets (noisier figures), still -count runs")
	count := flag.Int("count", 5, "runs of every benchmark; a row gives the median ratio and its range")
	out := flag.String("out", "BENCHMARKS.md", "markdown file to write")
	jsonOut := flag.String("json", "", "also write the raw results as JSON to this file")
	filter := flag.String("only", "", "run only the benchmarks whose package path or -bench pattern contains this; rows of the others are left out")
	flag.Parse()
	if *count < 1 {
		log.Fatal("esbench: -count must be at least 1")
	}

	// One result map per `go test` run, so that a benchmark that two
	// runs share (a baseline) is compared within its run.
	var results []map[string]*result
	var logs bytes.Buffer
	start := time.Now()
	for _, r := range runs {
		if *filter != "" && !strings.Contains(r.pkg, *filter) && !strings.Contains(r.bench, *filter) {
			continue
		}
		bt := r.benchtime
		env := append(os.Environ(), r.env...)
		if *quick {
			bt = r.quick
			env = append(os.Environ(), r.quickEnv...)
		}
		invocations, perRun := 1, *count
		if r.interleave {
			invocations, perRun = *count, 1
		}
		args := []string{"test", "-run", "^$", "-bench", r.bench, "-benchtime", bt, "-count", strconv.Itoa(perRun), "-timeout", "120m", r.pkg}
		var buf bytes.Buffer
		for i := range invocations {
			log.Printf("go %s (%d of %d)", strings.Join(args, " "), i+1, invocations)
			cmd := exec.Command("go", args...)
			cmd.Env = env
			cmd.Stdout = io.MultiWriter(&buf, &logs)
			cmd.Stderr = io.MultiWriter(&buf, &logs)
			if err := cmd.Run(); err != nil {
				log.Printf("%s %s failed: %v\n%s", r.pkg, r.bench, err, tail(buf.String(), 2000))
			}
		}
		res := map[string]*result{}
		if err := parse(&buf, res); err != nil {
			log.Printf("%s %s: reading the output: %v", r.pkg, r.bench, err)
		}
		results = append(results, res)
	}
	lookup := func(measured, baseline string) (m, b *result) {
		for _, res := range results {
			if res[measured] != nil && res[baseline] != nil {
				return res[measured], res[baseline]
			}
		}
		for _, res := range results {
			if m == nil {
				m = res[measured]
			}
			if b == nil {
				b = res[baseline]
			}
		}
		return m, b
	}

	var md strings.Builder
	fmt.Fprintf(&md, "# esmill benchmarks\n\n")
	fmt.Fprintf(&md, "Measured %s on %s, in %s.\n\n", time.Now().UTC().Format("2006-01-02"), machine(), time.Since(start).Round(time.Second))
	cmdline := "go run ./cmd/esbench"
	if *quick {
		cmdline += " -quick"
	}
	if *count != 5 {
		cmdline += " -count " + strconv.Itoa(*count)
	}
	if *filter != "" {
		cmdline += " -only " + *filter
	}
	fmt.Fprintf(&md, "Reproduce: `%s`. Every row compares two benchmarks of the same run, each run %d times one after the other (or in %d interleaved rounds, where a section says so); ", cmdline, *count, *count)
	fmt.Fprintf(&md, "the ratio is measured / baseline (for times and bytes, baseline / measured), so above 1 means the measured side is faster or smaller. ")
	fmt.Fprintf(&md, "Measured and baseline are medians; the ratio is the median of the %d paired ratios, with their minimum and maximum.\n\n", *count)
	group := ""
	for _, rw := range rows() {
		m, b := lookup(rw.measured, rw.baseline)
		if *filter != "" && m == nil && b == nil {
			continue
		}
		if rw.group != group {
			group = rw.group
			fmt.Fprintf(&md, "\n## %s\n\n| scenario | measured | baseline | ratio (median) | min–max | runs |\n|---|---|---|---|---|---|\n", group)
		}
		var mv, bv []float64
		bm := rw.metric
		if rw.baselineMetric != "" {
			bm = rw.baselineMetric
		}
		if m != nil {
			mv = m.Metrics[rw.metric]
		}
		if b != nil {
			bv = b.Metrics[bm]
		}
		st, ok := compare(mv, bv, rw.lowerIsBetter)
		if !ok {
			fmt.Fprintf(&md, "| %s | %s | %s | skipped | | |\n", rw.label, cell(mv, rw.metric), cell(bv, bm))
			continue
		}
		fmt.Fprintf(&md, "| %s | %s | %s | %.2f | %.2f–%.2f | %d |\n", rw.label, format(st.measured, rw.metric), format(st.baseline, bm),
			st.median, st.lo, st.hi, st.runs)
	}
	fmt.Print(md.String())
	if err := os.WriteFile(*out, []byte(md.String()), 0o644); err != nil {
		log.Fatal(err)
	}
	if *jsonOut != "" {
		var list []*result
		for _, res := range results {
			names := make([]string, 0, len(res))
			for n := range res {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				list = append(list, res[n])
			}
		}
		b, _ := json.MarshalIndent(list, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

func cell(v []float64, metric string) string {
	if len(v) == 0 {
		return "—"
	}
	return format(median(v), metric)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
