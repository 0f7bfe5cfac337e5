package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// report is what a bench run writes: for each setup (single Redis,
// Cluster), the median of every figure of every workload and concurrency
// over the rounds, the ratios to the floors, and every run.
type report struct {
	Time        string         `json:"time"`
	CPUs        int            `json:"cpus"`
	GoVersion   string         `json:"go_version"`
	Rounds      int            `json:"rounds"`
	Seconds     float64        `json:"seconds_per_run"`
	Concurrency []int          `json:"concurrency"`
	Workloads   []string       `json:"workloads"`
	Setups      []*setupReport `json:"setups"`
}

// setupReport is one setup's figures.
type setupReport struct {
	Redis            string   `json:"redis"` // "single" or "cluster"
	RedisDescription string   `json:"redis_description"`
	Sessiond         string   `json:"sessiond"`
	SessiondArgs     []string `json:"sessiond_args,omitempty"` // every flag the bench gave it
	// LoadAvg is /proc/loadavg (1, 5, 15 minutes) before each round and at
	// the end: the machine is shared.
	LoadAvg []string `json:"load_avg"`
	// Medians: each figure (ops/s, p50, p99...) is its own median over the
	// rounds.
	Medians []runResult `json:"medians"`
	// Ratios, by "name @concurrency": see ratioDefs (each the median of the
	// rounds' own ratios: pairedRatios), and "create WATCH retries per
	// create".
	Ratios map[string]float64 `json:"ratios"`
	// RatioRanges holds, for each ratio of Ratios that is a median of the
	// rounds' own ratios, the lowest and the highest of them: how far one
	// round moved (the counts have none).
	RatioRanges map[string][2]float64 `json:"ratio_ranges,omitempty"`
	Runs        []runResult           `json:"runs"`
}

// watchCount is what sessiond's /metrics said about one create run.
type watchCount struct {
	Retries int64 `json:"retries"` // sessiond_store_watch_retries_total{operation="create"} over the run
	Creates int64 `json:"creates"` // CreateSession calls that succeeded over the run
}

// readCount is what sessiond's /metrics said about one validate run's reads.
type readCount struct {
	Direct    int64 `json:"direct"`    // sessiond_store_validation_reads_total{path="direct"} over the run
	Pipelined int64 `json:"pipelined"` // ...{path="pipelined"}
	Pipelines int64 `json:"pipelines"` // sessiond_store_validation_read_pipelines_total
}

// missCount is what sessiond's /metrics said about one protected-cache run.
type missCount struct {
	Validations int64 `json:"validations"` // ValidateSession calls sessiond began over the run
	Calls       int64 `json:"calls"`       // protected-cache calls over the run
}

// ratioDefs: name, numerator workload, denominator workload, and whether it
// compares p99 latency instead of throughput.
var ratioDefs = []struct {
	name, num, den string
	p99            bool
}{
	{"validate/grpc-hgetall throughput", "validate", "grpc-hgetall", false},
	{"validate/grpc-hgetall-batched throughput", "validate", "grpc-hgetall-batched", false},
	{"validate/grpc-echo throughput", "validate", "grpc-echo", false},
	{"validate/grpc-hgetall p99", "validate", "grpc-hgetall", true},
	{"validate/grpc-hgetall-batched p99", "validate", "grpc-hgetall-batched", true},
	{"grpc-hgetall-batched/grpc-hgetall throughput", "grpc-hgetall-batched", "grpc-hgetall", false},
	{"grpc-hgetall/redis-hgetall throughput", "grpc-hgetall", "redis-hgetall", false},
	{"forward-auth/validate throughput", "forward-auth", "validate", false},
	{"forward-auth/validate p99", "forward-auth", "validate", true},
	{"protected-cache/unprotected throughput", "protected-cache", "unprotected", false},
	{"protected/unprotected throughput", "protected", "unprotected", false},
	{"create/grpc-create-tx throughput", "create", "grpc-create-tx", false},
}

// The names of the counts among the ratios: WATCH retries per create, the
// share of validate's reads sent on their own, its pipelined reads per
// pipeline, and the share of protected-cache's calls that the client cache
// did not answer.
const (
	retriesRatio     = "create WATCH retries per create"
	directReadsRatio = "validate reads sent direct"
	batchRatio       = "validate reads per pipeline"
	missRatio        = "protected-cache calls sent to sessiond"
)

// alternatingDefs: the workloads whose callers make two calls in turn, the
// RPCs compared (numerator, denominator), the ratio's name, and the ratio of
// ratioDefs it is listed beside.
var alternatingDefs = []struct {
	workload, num, den, name, beside string
}{
	{"alternating", "ValidateSession", "Floor/Get", "validate/grpc-hgetall calls alternating, 1/mean latency", "validate/grpc-hgetall throughput"},
	{"cache-alternating", "protected-cache", "unprotected", "protected-cache/unprotected calls alternating, 1/mean latency", "protected-cache/unprotected throughput"},
}

func newReport(cfg *benchConfig) *report {
	return &report{
		Time: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		Rounds: cfg.rounds, Seconds: cfg.duration.Seconds(), Concurrency: cfg.concurrency, Workloads: cfg.workloads,
	}
}

// summarize computes the medians and the ratios from the runs.
func (s *setupReport) summarize(cfg *benchConfig) {
	s.Ratios, s.RatioRanges = map[string]float64{}, map[string][2]float64{}
	for _, c := range cfg.concurrency {
		// perRound sets a ratio from the rounds' own: their median, and
		// their range.
		perRound := func(name string, ratios []float64) {
			if len(ratios) == 0 {
				return
			}
			key := fmt.Sprintf("%s @%d", name, c)
			s.Ratios[key] = median(ratios)
			s.RatioRanges[key] = [2]float64{slices.Min(ratios), slices.Max(ratios)}
		}
		for _, w := range cfg.workloads {
			var same []runResult
			for _, run := range s.Runs {
				if run.Workload == w && run.Concurrency == c {
					same = append(same, run)
				}
			}
			if len(same) > 0 {
				s.Medians = append(s.Medians, medianRun(same))
			}
		}
		for _, d := range ratioDefs {
			perRound(d.name, pairedRatios(s.Runs, d.num, d.den, c, d.p99))
		}
		for _, d := range alternatingDefs {
			perRound(d.name, alternatingSpeeds(s.Runs, d.workload, d.num, d.den, c))
		}
		// The counts, each over every run at c that has it: create's WATCH
		// retries, validate's reads, protected-cache's misses.
		var (
			wc watchCount
			rc readCount
			mc missCount
		)
		for _, run := range s.Runs {
			if run.Concurrency != c {
				continue
			}
			if r := run.WatchRetries; r != nil {
				wc.Retries += r.Retries
				wc.Creates += r.Creates
			}
			if r := run.Reads; r != nil {
				rc.Direct += r.Direct
				rc.Pipelined += r.Pipelined
				rc.Pipelines += r.Pipelines
			}
			if r := run.CacheMisses; r != nil {
				mc.Validations += r.Validations
				mc.Calls += r.Calls
			}
		}
		share := func(name string, part, whole int64) {
			if whole > 0 {
				s.Ratios[fmt.Sprintf("%s @%d", name, c)] = float64(part) / float64(whole)
			}
		}
		share(retriesRatio, wc.Retries, wc.Creates)
		share(directReadsRatio, rc.Direct, rc.Direct+rc.Pipelined)
		share(batchRatio, rc.Pipelined, rc.Pipelines)
		share(missRatio, mc.Validations, mc.Calls)
	}
}

// pairedRatios are each round's own ratio of workload num to workload den
// at concurrency c (throughput, or p99 when p99 is set); the report gives
// their median. A round runs the two back to back, so a slow spell of the
// shared machine that lasts longer than a run moves both figures of that
// round alike and cancels out of its ratio, where a ratio of the two
// medians could pair figures from different rounds. runs holds one run of
// each workload per round, in round order.
func pairedRatios(runs []runResult, num, den string, c int, p99 bool) []float64 {
	figure := func(r runResult) float64 {
		if p99 {
			return r.Total.P99ms
		}
		return r.Total.OpsPerSec
	}
	var a, b []float64
	for _, r := range runs {
		switch {
		case r.Concurrency != c:
		case r.Workload == num:
			a = append(a, figure(r))
		case r.Workload == den:
			b = append(b, figure(r))
		}
	}
	var ratios []float64
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			ratios = append(ratios, a[i]/b[i])
		}
	}
	return ratios
}

// alternatingSpeeds compares the two calls of an alternating workload's
// runs at c: den's mean latency over num's, so that it reads as the
// throughput ratios do (above 1: num's calls are faster). Each run gives
// one ratio, from calls that took turns on the same callers; the report
// gives their median.
func alternatingSpeeds(runs []runResult, workload, num, den string, c int) []float64 {
	var ratios []float64
	for _, r := range runs {
		if r.Workload != workload || r.Concurrency != c {
			continue
		}
		var numMs, denMs float64
		for _, p := range r.PerRPC {
			switch p.RPC {
			case num:
				numMs = p.MeanMs
			case den:
				denMs = p.MeanMs
			}
		}
		if numMs > 0 && denMs > 0 {
			ratios = append(ratios, denMs/numMs)
		}
	}
	return ratios
}

// medianRun is the runs' median: each figure the median of its own.
func medianRun(runs []runResult) runResult {
	m := runResult{Workload: runs[0].Workload, Concurrency: runs[0].Concurrency}
	var secs []float64
	var totals []rpcStats
	perRPC := map[string][]rpcStats{}
	var names []string
	for _, r := range runs {
		secs = append(secs, r.Seconds)
		totals = append(totals, r.Total)
		for _, p := range r.PerRPC {
			if _, ok := perRPC[p.RPC]; !ok {
				names = append(names, p.RPC)
			}
			perRPC[p.RPC] = append(perRPC[p.RPC], p)
		}
	}
	m.Seconds = median(secs)
	m.Total = medianStats(totals)
	cpu := map[string][]float64{}
	for _, r := range runs {
		for role, v := range r.CPUPerCall {
			cpu[role] = append(cpu[role], v)
		}
	}
	for role, v := range cpu {
		if len(v) == len(runs) { // a role missing from a run has no median
			if m.CPUPerCall == nil {
				m.CPUPerCall = map[string]float64{}
			}
			m.CPUPerCall[role] = median(v)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		m.PerRPC = append(m.PerRPC, medianStats(perRPC[n]))
	}
	return m
}

func medianStats(s []rpcStats) rpcStats {
	field := func(f func(rpcStats) float64) float64 {
		v := make([]float64, len(s))
		for i, x := range s {
			v[i] = f(x)
		}
		return median(v)
	}
	return rpcStats{
		RPC:       s[0].RPC,
		Ops:       int(field(func(x rpcStats) float64 { return float64(x.Ops) })),
		Errors:    int(field(func(x rpcStats) float64 { return float64(x.Errors) })),
		OpsPerSec: field(func(x rpcStats) float64 { return x.OpsPerSec }),
		MeanMs:    field(func(x rpcStats) float64 { return x.MeanMs }),
		P50ms:     field(func(x rpcStats) float64 { return x.P50ms }),
		P90ms:     field(func(x rpcStats) float64 { return x.P90ms }),
		P99ms:     field(func(x rpcStats) float64 { return x.P99ms }),
		P999ms:    field(func(x rpcStats) float64 { return x.P999ms }),
	}
}

// median of v (the mean of the two middle values when len(v) is even).
func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func (s *setupReport) median(workload string, c int) (runResult, bool) {
	for _, m := range s.Medians {
		if m.Workload == workload && m.Concurrency == c {
			return m, true
		}
	}
	return runResult{}, false
}

func (r *report) print(w io.Writer) {
	for _, s := range r.Setups {
		fmt.Fprintf(w, "\n%s: %s; sessiond: %s\nload average before each round and at the end: %s\n", s.Redis, s.RedisDescription, s.Sessiond, strings.Join(s.LoadAvg, " | "))
		fmt.Fprintf(w, "Medians over %d rounds of %.1fs (%d CPUs, %s):\n\n", r.Rounds, r.Seconds, r.CPUs, r.GoVersion)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "workload\tconc\tRPC\tops/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\terrors\t")
		for _, m := range s.Medians {
			for _, st := range append([]rpcStats{m.Total}, m.PerRPC...) {
				if st.RPC != "all" && len(m.PerRPC) == 1 {
					continue
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t\n", m.Workload, m.Concurrency, st.RPC, st.OpsPerSec, st.P50ms, st.P90ms, st.P99ms, st.P999ms, st.Errors)
			}
		}
		_ = tw.Flush()
		s.printCPU(w)
	}
	// The ratios side by side: a column per concurrency and setup.
	fmt.Fprintln(w, "\nRatios (medians of the rounds' own ratios, each within its own setup; [the lowest and highest round's]):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	for _, c := range r.Concurrency {
		for _, s := range r.Setups {
			fmt.Fprintf(tw, "%s c=%d\t", s.Redis, c)
		}
	}
	fmt.Fprintln(tw)
	for _, name := range r.ratioNames() {
		fmt.Fprintf(tw, "%s\t", name)
		for _, c := range r.Concurrency {
			for _, s := range r.Setups {
				key := fmt.Sprintf("%s @%d", name, c)
				if v, ok := s.Ratios[key]; ok {
					if rg, ok := s.RatioRanges[key]; ok {
						fmt.Fprintf(tw, "%.3f [%.3f–%.3f]\t", v, rg[0], rg[1])
					} else {
						fmt.Fprintf(tw, "%.3f\t", v)
					}
				} else {
					fmt.Fprint(tw, "-\t")
				}
			}
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
}

// printCPU prints the CPU each process spent per call (medians over the
// rounds), when it was measured.
func (s *setupReport) printCPU(w io.Writer) {
	var roles []string
	for _, role := range cpuRoles {
		if slices.ContainsFunc(s.Medians, func(m runResult) bool { _, ok := m.CPUPerCall[role]; return ok }) {
			roles = append(roles, role)
		}
	}
	if len(roles) == 0 {
		return
	}
	fmt.Fprintln(w, "\nCPU per call, µs, by process (medians over the rounds; /proc, 10 ms ticks):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "workload\tconc\t%s\t\n", strings.Join(roles, "\t"))
	for _, m := range s.Medians {
		if m.CPUPerCall == nil {
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t", m.Workload, m.Concurrency)
		for _, role := range roles {
			if v, ok := m.CPUPerCall[role]; ok {
				fmt.Fprintf(tw, "%.1f\t", v)
			} else {
				fmt.Fprint(tw, "-\t")
			}
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
}

// ratioNames are the ratios some setup has, in ratioDefs' order.
func (r *report) ratioNames() []string {
	var names []string
	for _, d := range ratioDefs {
		names = append(names, d.name)
	}
	for _, d := range alternatingDefs {
		names = slices.Insert(names, slices.Index(names, d.beside)+1, d.name)
	}
	names = append(names, retriesRatio, directReadsRatio, batchRatio, missRatio)
	var out []string
	for _, n := range names {
		for _, s := range r.Setups {
			if slices.ContainsFunc(r.Concurrency, func(c int) bool { _, ok := s.Ratios[fmt.Sprintf("%s @%d", n, c)]; return ok }) {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// floorWorkloads are drawn dashed in the chart.
var floorWorkloads = []string{"grpc-echo", "redis-hgetall", "grpc-hgetall", "grpc-hgetall-batched", "grpc-create-tx"}

// svg draws, for each setup, throughput and p99 latency by concurrency, one
// line a workload (the floors dashed).
func (r *report) svg() string {
	const W, H, pad, gap, rowGap = 460, 300, 50, 40, 70
	colors := []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#e7969c", "#637939", "#8c6d31"}
	color := func(wl string) string {
		i := slices.Index(r.Workloads, wl)
		return colors[max(i, 0)%len(colors)]
	}
	rowH := H + rowGap
	legendY := len(r.Setups)*rowH + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", 2*W+gap, legendY+14*((len(r.Workloads)+1)/2)+30)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	panel := func(s *setupReport, x0, y0 int, title string, value func(runResult) float64) {
		maxV := 0.0
		for _, m := range s.Medians {
			maxV = max(maxV, value(m))
		}
		if maxV == 0 {
			maxV = 1
		}
		base := y0 + H - pad + 30 // the x axis
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="13" font-weight="bold">%s</text>`+"\n", x0+pad, y0+16, title)
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0+pad, base, x0+W-10, base)
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0+pad, y0+30, x0+pad, base)
		for t := 0; t <= 4; t++ {
			y := base - t*(H-pad)/4
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#eee"/>`+"\n",
				x0+pad-4, y+4, short(maxV*float64(t)/4), x0+pad, y, x0+W-10, y)
		}
		n := len(r.Concurrency)
		xOf := func(i int) int { return x0 + pad + 20 + i*(W-pad-50)/max(n-1, 1) }
		for i, c := range r.Concurrency {
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%d</text>`+"\n", xOf(i), base+15, c)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">concurrent callers</text>`+"\n", x0+pad+(W-pad)/2, base+28)
		for _, wl := range r.Workloads {
			var pts []string
			for i, c := range r.Concurrency {
				if m, ok := s.median(wl, c); ok {
					y := float64(base) - value(m)/maxV*float64(H-pad)
					pts = append(pts, fmt.Sprintf("%d,%.1f", xOf(i), y))
					fmt.Fprintf(&b, `<circle cx="%d" cy="%.1f" r="3" fill="%s"/>`+"\n", xOf(i), y, color(wl))
				}
			}
			dash := ""
			if slices.Contains(floorWorkloads, wl) {
				dash = ` stroke-dasharray="6,4"`
			}
			if len(pts) > 0 {
				fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), color(wl), dash)
			}
		}
	}
	for i, s := range r.Setups {
		name := "single Redis"
		if s.Redis == "cluster" {
			name = "Redis Cluster (3 masters)"
		}
		panel(s, 0, i*rowH, name+": throughput (ops/s)", func(m runResult) float64 { return m.Total.OpsPerSec })
		panel(s, W+gap, i*rowH, name+": p99 latency (ms)", func(m runResult) float64 { return m.Total.P99ms })
	}
	for i, wl := range r.Workloads {
		x, y := pad+(i%2)*220, legendY+(i/2)*14
		dash := ""
		if slices.Contains(floorWorkloads, wl) {
			dash = ` stroke-dasharray="6,4"`
			wl += " (floor)"
		}
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"%s/><text x="%d" y="%d">%s</text>`+"\n", x, y-4, x+22, y-4, color(strings.TrimSuffix(wl, " (floor)")), dash, x+28, y, wl)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">%d CPUs, %s, medians of %d rounds of %gs, %s</text>`+"\n", W+gap+pad, legendY, r.CPUs, r.GoVersion, r.Rounds, r.Seconds, r.Time)
	b.WriteString("</svg>\n")
	return b.String()
}

func short(v float64) string {
	switch {
	case v >= 10_000:
		return fmt.Sprintf("%.0fk", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.1fk", v/1000)
	case v >= 10:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
