// Command esbench runs every esmill benchmark scenario, each next to its
// baseline in the same run, prints a table of ratios and writes it to a
// file (BENCHMARKS.md by default).
//
//	go run ./cmd/esbench [-quick] [-out BENCHMARKS.md] [-json results.json]
//
// It drives `go test -bench` in each package, so the figures are those of
// the packages' own benchmarks; a scenario whose service is missing (no
// sierradb binary, no redis-server, no PostgreSQL) is reported as skipped.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// run is one `go test -bench` invocation.
type run struct {
	pkg       string
	bench     string
	benchtime string
	quick     string
	env       []string // added to the environment
	quickEnv  []string // added instead with -quick
}

// row compares a measured benchmark with its baseline from the same run.
type row struct {
	group    string
	label    string
	measured string
	baseline string
	metric   string
	// lowerIsBetter: the metric is a duration (ns/op).
	lowerIsBetter bool
}

// result is one benchmark line.
type result struct {
	Name    string             `json:"name"`
	Metrics map[string]float64 `json:"metrics"`
}

var runs = []run{
	{pkg: "./sierradb", bench: `^BenchmarkAppend$`, benchtime: "300x", quick: "40x"},
	{pkg: "./sierradb", bench: `^BenchmarkAppendMulti10$`, benchtime: "300x", quick: "40x"},
	{pkg: "./sierradb", bench: `^BenchmarkSubscribeCatchUp$`, benchtime: "2x", quick: "1x"},
	{pkg: "./cqrs", bench: `^BenchmarkCommands$`, benchtime: "2000x", quick: "200x"},
	{pkg: "./cqrs", bench: `^BenchmarkObservability$`, benchtime: "4000x", quick: "500x"},
	{pkg: "./aggregate", bench: `^BenchmarkRehydrate$`, benchtime: "5x", quick: "2x"},
	{pkg: "./aggregate", bench: `^BenchmarkFreshness$`, benchtime: "5000x", quick: "500x"},
	{pkg: "./internal/scaleout", bench: `^BenchmarkRouterProcesses$`, benchtime: "4000x", quick: "600x"},
	{pkg: "./sierradb/pubsub", bench: `^BenchmarkPublish$/(embedded|sierradb)/(adapter|raw)/(serial|batch10|goroutines16)$`, benchtime: "2s", quick: "300ms"},
	{pkg: "./sierradb/pubsub", bench: `^BenchmarkSubscribe$`, benchtime: "3x", quick: "1x"},
	{pkg: "./test/readmodel", bench: `^BenchmarkCatchUp$`, benchtime: "3x", quick: "1x"},
	{pkg: "./test/readmodel", bench: `^BenchmarkSharedCatchUp$`, benchtime: "1x", quick: "1x",
		quickEnv: []string{"ESMILL_SHARED_EVENTS=20000"}},
	{pkg: "./sierradb/embedded", bench: `^BenchmarkDirectoryScale$`, benchtime: "1x", quick: "1x",
		env: []string{"EMBEDDED_SCALE_EVENTS=5000000"}, quickEnv: []string{"EMBEDDED_SCALE_EVENTS=500000"}},
}

func rows() []row {
	var rs []row
	for _, n := range []int{1, 16, 64} {
		rs = append(rs,
			row{"SierraDB client", fmt.Sprintf("EAPPEND, %d goroutines: embedded vs real", n),
				fmt.Sprintf("BenchmarkAppend/embedded/goroutines=%d", n), fmt.Sprintf("BenchmarkAppend/sierradb/goroutines=%d", n), "events/s", false},
			row{"SierraDB client", fmt.Sprintf("EMAPPEND of 10, %d goroutines: embedded vs real", n),
				fmt.Sprintf("BenchmarkAppendMulti10/embedded/goroutines=%d", n), fmt.Sprintf("BenchmarkAppendMulti10/sierradb/goroutines=%d", n), "events/s", false},
		)
	}
	rs = append(rs, row{"SierraDB client", "catch-up subscription, 100k events: embedded vs real",
		"BenchmarkSubscribeCatchUp/embedded", "BenchmarkSubscribeCatchUp/sierradb", "events/s", false})
	for _, srv := range []string{"embedded", "sierradb"} {
		for _, n := range []int{1, 16, 64} {
			base := fmt.Sprintf("BenchmarkCommands/%s/raw-emappend/callers=%d", srv, n)
			for _, m := range []struct{ label, name string }{
				{"executor", "executor"}, {"router over GoChannel", "router-gochannel"}, {"router over Redis Streams", "router-redisstream"},
			} {
				rs = append(rs, row{"Commands (" + srv + ")", fmt.Sprintf("%s vs raw EMAPPEND, %d callers", m.label, n),
					fmt.Sprintf("BenchmarkCommands/%s/%s/callers=%d", srv, m.name, n), base, "cmds/s", false})
			}
		}
		rs = append(rs, row{"Rehydration (" + srv + ")", "10,000-event entity: snapshot vs events (time per load)",
			fmt.Sprintf("BenchmarkRehydrate/%s/snapshot", srv), fmt.Sprintf("BenchmarkRehydrate/%s/events", srv), "ns/op", true})
	}
	for _, m := range []struct{ label, name string }{{"executor", "executor"}, {"router over GoChannel", "router-gochannel"}} {
		rs = append(rs, row{"Observability (embedded)", m.label + ", 16 callers: tracing (SDK, no-op exporter) and metrics on vs off",
			fmt.Sprintf("BenchmarkObservability/embedded/%s-on/callers=16", m.name),
			fmt.Sprintf("BenchmarkObservability/embedded/%s-off/callers=16", m.name), "cmds/s", false})
	}
	for _, srv := range []string{"embedded", "sierradb"} {
		g := "Fresh answers (" + srv + ")"
		rs = append(rs,
			row{g, "rejection, 16 callers: stream read first (no fence) vs from a fenced cache", fmt.Sprintf("BenchmarkFreshness/%s/rejection/checked", srv),
				fmt.Sprintf("BenchmarkFreshness/%s/rejection/fenced", srv), "cmds/s", false},
			row{g, "command that writes, 16 callers: cancellable context vs background", fmt.Sprintf("BenchmarkFreshness/%s/write/cancellable", srv),
				fmt.Sprintf("BenchmarkFreshness/%s/write/background", srv), "cmds/s", false})
	}
	for _, srv := range []string{"embedded-process", "sierradb"} {
		g := "Scale-out over Redis Streams (redispart, 16 partitions; " + srv + ")"
		for _, n := range []int{1, 3} {
			rs = append(rs, row{g, fmt.Sprintf("%d worker process(es) in a lease group vs one router in the benchmark process", n),
				fmt.Sprintf("BenchmarkRouterProcesses/%s/processes=%d", srv, n), fmt.Sprintf("BenchmarkRouterProcesses/%s/single", srv), "cmds/s", false})
		}
	}
	for _, srv := range []string{"embedded", "sierradb"} {
		for _, shape := range []string{"serial", "batch10", "goroutines16"} {
			rs = append(rs, row{"Watermill Pub/Sub adapter (" + srv + ")", "publish, " + shape + ": adapter vs raw client",
				fmt.Sprintf("BenchmarkPublish/%s/adapter/%s", srv, shape), fmt.Sprintf("BenchmarkPublish/%s/raw/%s", srv, shape), "msgs/s", false})
		}
		rs = append(rs,
			row{"Watermill Pub/Sub adapter (" + srv + ")", "subscribe: adapter vs raw subscription",
				fmt.Sprintf("BenchmarkSubscribe/%s/adapter", srv), fmt.Sprintf("BenchmarkSubscribe/%s/raw", srv), "msgs/s", false},
			row{"Watermill Pub/Sub adapter (" + srv + ")", "subscribe with a consumer group: adapter vs raw subscription",
				fmt.Sprintf("BenchmarkSubscribe/%s/adapter/group", srv), fmt.Sprintf("BenchmarkSubscribe/%s/raw", srv), "msgs/s", false})
	}
	const scale = "Embedded SierraDB, directory mode at scale (5,000,000 events of 84 bytes; -quick: 500,000)"
	for _, r := range []struct{ label, metric string }{
		{"ESCAN of 100-event streams: directory vs memory mode", "escan-events/s"},
		{"EPSCAN of 1000 events: directory vs memory mode", "epscan-events/s"},
		{"EAPPEND from 16 connections (fsync per append): directory vs memory mode", "eappend-events/s"},
	} {
		rs = append(rs, row{scale, r.label, "BenchmarkDirectoryScale/directory", "BenchmarkDirectoryScale/memory", r.metric, false})
	}
	rs = append(rs,
		row{scale, "resident bytes per stored event: directory (beyond the block cache) vs memory mode",
			"BenchmarkDirectoryScale/directory", "BenchmarkDirectoryScale/memory", "rss-B/event", true},
		row{scale, "start-up per million events: directory mode vs reading its log files",
			"BenchmarkDirectoryScale/directory", "BenchmarkDirectoryScale/read-files", "startup-s/Mevents", true})
	for _, store := range []string{"memory", "file", "sqlite", "postgres", "mongodb-ferretdb"} {
		for _, batch := range []int{10, 100, 1000} {
			rs = append(rs, row{"Projection catch-up (embedded SierraDB)", fmt.Sprintf("%s, batch %d: store vs raw subscription read", store, batch),
				fmt.Sprintf("BenchmarkCatchUp/%s/batch=%d", store, batch), "BenchmarkCatchUp/subscription", "events/s", false})
		}
	}
	const shared = "Projection instances sharing the partitions (PostgreSQL, embedded SierraDB; 100,000 events, -quick: 20,000)"
	rs = append(rs,
		row{shared, "catch-up: 3 instances under leases vs 1 runner alone", "BenchmarkSharedCatchUp/instances=3", "BenchmarkSharedCatchUp/alone", "events/s", false},
		row{shared, "catch-up: 1 instance under leases vs 1 runner alone", "BenchmarkSharedCatchUp/instances=1", "BenchmarkSharedCatchUp/alone", "events/s", false})
	return rs
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+(\d+)\s+(.*)$`)

// parse reads `go test -bench` output.
func parse(r io.Reader, out map[string]result) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		res := result{Name: m[1], Metrics: map[string]float64{}}
		f := strings.Fields(m[4])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err == nil {
				res.Metrics[f[i+1]] = v
			}
		}
		out[res.Name] = res
	}
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
	quick := flag.Bool("quick", false, "fewer iterations (noisier figures)")
	out := flag.String("out", "BENCHMARKS.md", "markdown file to write")
	jsonOut := flag.String("json", "", "also write the raw results as JSON to this file")
	filter := flag.String("only", "", "run only the packages whose path contains this")
	flag.Parse()

	results := map[string]result{}
	var logs bytes.Buffer
	start := time.Now()
	for _, r := range runs {
		if *filter != "" && !strings.Contains(r.pkg, *filter) {
			continue
		}
		bt := r.benchtime
		if *quick {
			bt = r.quick
		}
		args := []string{"test", "-run", "^$", "-bench", r.bench, "-benchtime", bt, "-timeout", "60m", r.pkg}
		log.Printf("go %s", strings.Join(args, " "))
		cmd := exec.Command("go", args...)
		cmd.Env = append(os.Environ(), r.env...)
		if *quick {
			cmd.Env = append(os.Environ(), r.quickEnv...)
		}
		var buf bytes.Buffer
		cmd.Stdout = io.MultiWriter(&buf, &logs)
		cmd.Stderr = io.MultiWriter(&buf, &logs)
		if err := cmd.Run(); err != nil {
			log.Printf("%s %s failed: %v\n%s", r.pkg, r.bench, err, tail(buf.String(), 2000))
		}
		parse(&buf, results)
	}

	var md strings.Builder
	fmt.Fprintf(&md, "# esmill benchmarks\n\n")
	fmt.Fprintf(&md, "Measured %s on %s, in %s.\n\n", time.Now().UTC().Format("2006-01-02"), machine(), time.Since(start).Round(time.Second))
	fmt.Fprintf(&md, "Reproduce: `go run ./cmd/esbench%s`. Every row compares two benchmarks of the same run; the ratio is measured / baseline ", map[bool]string{true: " -quick"}[*quick])
	fmt.Fprintf(&md, "(for times, baseline / measured), so above 1 means the measured side is faster.\n\n")
	group := ""
	for _, rw := range rows() {
		m, okM := results[rw.measured]
		b, okB := results[rw.baseline]
		if rw.group != group {
			group = rw.group
			fmt.Fprintf(&md, "\n## %s\n\n| scenario | measured | baseline | ratio |\n|---|---|---|---|\n", group)
		}
		mv, bv := m.Metrics[rw.metric], b.Metrics[rw.metric]
		if !okM || !okB || mv == 0 || bv == 0 {
			fmt.Fprintf(&md, "| %s | %s | %s | skipped |\n", rw.label, cell(okM, mv, rw.metric), cell(okB, bv, rw.metric))
			continue
		}
		ratio := mv / bv
		if rw.lowerIsBetter {
			ratio = bv / mv
		}
		fmt.Fprintf(&md, "| %s | %s | %s | %.2f |\n", rw.label, format(mv, rw.metric), format(bv, rw.metric), ratio)
	}
	fmt.Print(md.String())
	if err := os.WriteFile(*out, []byte(md.String()), 0o644); err != nil {
		log.Fatal(err)
	}
	if *jsonOut != "" {
		names := make([]string, 0, len(results))
		for n := range results {
			names = append(names, n)
		}
		sort.Strings(names)
		list := make([]result, 0, len(names))
		for _, n := range names {
			list = append(list, results[n])
		}
		b, _ := json.MarshalIndent(list, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

func cell(ok bool, v float64, metric string) string {
	if !ok || v == 0 {
		return "—"
	}
	return format(v, metric)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
