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

// report is what a bench run writes: the median run of every workload and
// concurrency, and the ratios to the floors.
type report struct {
	Time        string             `json:"time"`
	CPUs        int                `json:"cpus"`
	GoVersion   string             `json:"go_version"`
	Rounds      int                `json:"rounds"`
	Seconds     float64            `json:"seconds_per_run"`
	Concurrency []int              `json:"concurrency"`
	Medians     []runResult        `json:"medians"`
	Ratios      map[string]float64 `json:"ratios"`
	Runs        []runResult        `json:"runs"`
}

// ratioDefs: name, numerator workload, denominator workload, and whether it
// compares p99 latency instead of throughput.
var ratioDefs = []struct {
	name, num, den string
	p99            bool
}{
	{"validate/grpc-hgetall throughput", "validate", "grpc-hgetall", false},
	{"validate/grpc-hgetall p99", "validate", "grpc-hgetall", true},
	{"forward-auth/validate throughput", "forward-auth", "validate", false},
	{"forward-auth/validate p99", "forward-auth", "validate", true},
	{"create/grpc-create-tx throughput", "create", "grpc-create-tx", false},
	{"protected-cache/unprotected throughput", "protected-cache", "unprotected", false},
	{"protected/unprotected throughput", "protected", "unprotected", false},
	{"grpc-hgetall/redis-hgetall throughput", "grpc-hgetall", "redis-hgetall", false},
}

func newReport(cfg *benchConfig, runs []runResult) *report {
	r := &report{
		Time: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		Rounds: cfg.rounds, Seconds: cfg.duration.Seconds(), Concurrency: cfg.concurrency, Runs: runs,
		Ratios: map[string]float64{},
	}
	for _, c := range cfg.concurrency {
		for _, w := range cfg.workloads {
			var same []runResult
			for _, run := range runs {
				if run.Workload == w && run.Concurrency == c {
					same = append(same, run)
				}
			}
			if len(same) == 0 {
				continue
			}
			slices.SortFunc(same, func(a, b runResult) int {
				switch {
				case a.Total.OpsPerSec < b.Total.OpsPerSec:
					return -1
				case a.Total.OpsPerSec > b.Total.OpsPerSec:
					return 1
				}
				return 0
			})
			r.Medians = append(r.Medians, same[len(same)/2])
		}
	}
	for _, c := range cfg.concurrency {
		for _, d := range ratioDefs {
			num, ok1 := r.median(d.num, c)
			den, ok2 := r.median(d.den, c)
			if !ok1 || !ok2 {
				continue
			}
			a, b := num.Total.OpsPerSec, den.Total.OpsPerSec
			if d.p99 {
				a, b = num.Total.P99ms, den.Total.P99ms
			}
			if b > 0 {
				r.Ratios[fmt.Sprintf("%s @%d", d.name, c)] = a / b
			}
		}
	}
	return r
}

func (r *report) median(workload string, c int) (runResult, bool) {
	for _, m := range r.Medians {
		if m.Workload == workload && m.Concurrency == c {
			return m, true
		}
	}
	return runResult{}, false
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "\nMedians over %d rounds of %.1fs (%d CPUs, %s):\n\n", r.Rounds, r.Seconds, r.CPUs, r.GoVersion)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tconc\tRPC\tops/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\terrors\t")
	for _, m := range r.Medians {
		for _, s := range append([]rpcStats{m.Total}, m.PerRPC...) {
			if s.RPC != "all" && len(m.PerRPC) == 1 {
				continue
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t\n", m.Workload, m.Concurrency, s.RPC, s.OpsPerSec, s.P50ms, s.P90ms, s.P99ms, s.P999ms, s.Errors)
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "\nRatios (same run, medians):")
	names := make([]string, 0, len(r.Ratios))
	for k := range r.Ratios {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		fmt.Fprintf(w, "  %-48s %.2f\n", k, r.Ratios[k])
	}
}

// svg draws throughput and p99 latency by concurrency, one line a workload.
func (r *report) svg() string {
	const W, H, pad, gap = 460, 300, 50, 40
	var workloads []string
	for _, m := range r.Medians {
		if !slices.Contains(workloads, m.Workload) {
			workloads = append(workloads, m.Workload)
		}
	}
	colors := []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", 2*W+gap, H+40+14*len(workloads))
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	panel := func(x0 int, title string, value func(runResult) float64) {
		maxV := 0.0
		for _, m := range r.Medians {
			maxV = max(maxV, value(m))
		}
		if maxV == 0 {
			maxV = 1
		}
		fmt.Fprintf(&b, `<text x="%d" y="16" font-size="13" font-weight="bold">%s</text>`+"\n", x0+pad, title)
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0+pad, H-pad+30, x0+W-10, H-pad+30)
		fmt.Fprintf(&b, `<line x1="%d" y1="30" x2="%d" y2="%d" stroke="black"/>`+"\n", x0+pad, x0+pad, H-pad+30)
		for t := 0; t <= 4; t++ {
			y := H - pad + 30 - t*(H-pad)/4
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#eee"/>`+"\n",
				x0+pad-4, y+4, short(maxV*float64(t)/4), x0+pad, y, x0+W-10, y)
		}
		n := len(r.Concurrency)
		xOf := func(i int) int { return x0 + pad + 20 + i*(W-pad-50)/max(n-1, 1) }
		for i, c := range r.Concurrency {
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%d</text>`+"\n", xOf(i), H-pad+45, c)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">concurrent callers</text>`+"\n", x0+pad+(W-pad)/2, H-pad+58)
		for wi, wl := range workloads {
			var pts []string
			for i, c := range r.Concurrency {
				if m, ok := r.median(wl, c); ok {
					y := float64(H-pad+30) - value(m)/maxV*float64(H-pad)
					pts = append(pts, fmt.Sprintf("%d,%.1f", xOf(i), y))
					fmt.Fprintf(&b, `<circle cx="%d" cy="%.1f" r="3" fill="%s"/>`+"\n", xOf(i), y, colors[wi%len(colors)])
				}
			}
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), colors[wi%len(colors)])
		}
	}
	panel(0, "Throughput (ops/s)", func(m runResult) float64 { return m.Total.OpsPerSec })
	panel(W+gap, "p99 latency (ms)", func(m runResult) float64 { return m.Total.P99ms })
	for wi, wl := range workloads {
		y := H + 40 + wi*14
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", pad, y-9, colors[wi%len(colors)], pad+16, y, wl)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">%d CPUs, %s, medians of %d rounds</text>`+"\n", W+gap+pad, H+40, r.CPUs, r.GoVersion, r.Rounds)
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
