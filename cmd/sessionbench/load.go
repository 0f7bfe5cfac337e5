package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// op is one call of a workload. It returns the RPC it made (for the
// per-RPC breakdown) and its error.
type op func(ctx context.Context, worker, i int) (rpc string, err error)

// rpcStats are the figures of one RPC in one run.
type rpcStats struct {
	RPC       string  `json:"rpc"`
	Ops       int     `json:"ops"`
	Errors    int     `json:"errors"`
	OpsPerSec float64 `json:"ops_per_sec"`
	MeanMs    float64 `json:"mean_ms"`
	P50ms     float64 `json:"p50_ms"`
	P90ms     float64 `json:"p90_ms"`
	P99ms     float64 `json:"p99_ms"`
	P999ms    float64 `json:"p999_ms"`
}

// runResult is one workload at one concurrency.
type runResult struct {
	Workload    string     `json:"workload"`
	Concurrency int        `json:"concurrency"`
	Seconds     float64    `json:"seconds"`
	Total       rpcStats   `json:"total"`
	PerRPC      []rpcStats `json:"per_rpc"`
	// WatchRetries: for create runs, sessiond's lost WATCH races over the
	// run (nil when not read).
	WatchRetries *watchCount `json:"watch_retries,omitempty"`
	// Reads: for validate runs, how sessiond's reads went to Redis over the
	// run (nil when not read).
	Reads *readCount `json:"reads,omitempty"`
	// CacheMisses: for protected-cache runs, the calls that the client
	// cache did not answer (nil when not read).
	CacheMisses *missCount `json:"cache_misses,omitempty"`
	// CPUPerCall is the CPU time each process spent per call over the
	// measured part of the run, in microseconds, by role (cpu.go), with
	// their total.
	CPUPerCall map[string]float64 `json:"cpu_us_per_call,omitempty"`
}

type sample struct {
	rpc string
	d   time.Duration
	err bool
}

// maxSamplesPerWorker bounds memory: a worker keeps its first samples only.
const maxSamplesPerWorker = 2_000_000

// runLoad runs fn from concurrency workers for d (after warmup, whose calls
// are not counted), printing progress to progress every second. Every loop
// is bounded by the time and by maxSamplesPerWorker. cpu is sampled when
// the measured part starts and when the last call has ended.
func runLoad(ctx context.Context, name string, concurrency int, warmup, d time.Duration, fn op, progress io.Writer, cpu *cpuMeter) runResult {
	var done atomic.Int64
	samples := make([][]sample, concurrency)
	start := time.Now()
	measureFrom := start.Add(warmup)
	end := measureFrom.Add(d)
	ctx, cancel := context.WithDeadline(ctx, end.Add(5*time.Second))
	defer cancel()
	var cpuBefore map[string]time.Duration
	sampled := make(chan struct{})
	cpuTimer := time.AfterFunc(warmup, func() {
		cpuBefore = cpu.sample()
		close(sampled)
	})
	var wg sync.WaitGroup
	for w := range concurrency {
		wg.Go(func() {
			for i := 0; i < maxSamplesPerWorker; i++ {
				t0 := time.Now()
				if !t0.Before(end) || ctx.Err() != nil {
					return
				}
				rpc, err := fn(ctx, w, i)
				if t0.Before(measureFrom) {
					continue
				}
				samples[w] = append(samples[w], sample{rpc: rpc, d: time.Since(t0), err: err != nil})
				done.Add(1)
			}
		})
	}
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				if now.After(measureFrom) {
					fmt.Fprintf(progress, "\r  %-12s c=%-4d %5.1fs  %9.0f ops/s", name, concurrency, now.Sub(measureFrom).Seconds(), float64(done.Load())/now.Sub(measureFrom).Seconds())
				} else {
					fmt.Fprintf(progress, "\r  %-12s c=%-4d warming up", name, concurrency)
				}
			}
		}
	}()
	wg.Wait()
	cpuAfter := cpu.sample()
	if cpuTimer.Stop() { // every call ended before the measured part began
		close(sampled)
	}
	<-sampled
	close(stop)
	fmt.Fprint(progress, "\r\033[K")
	elapsed := min(time.Since(measureFrom), d)
	var all []sample
	for _, s := range samples {
		all = append(all, s...)
	}
	byRPC := map[string][]sample{}
	for _, s := range all {
		byRPC[s.rpc] = append(byRPC[s.rpc], s)
	}
	res := runResult{Workload: name, Concurrency: concurrency, Seconds: elapsed.Seconds(), Total: summarize("all", all, elapsed)}
	res.CPUPerCall = perCall(cpuBefore, cpuAfter, len(all))
	for _, rpc := range slices.Sorted(maps.Keys(byRPC)) {
		res.PerRPC = append(res.PerRPC, summarize(rpc, byRPC[rpc], elapsed))
	}
	return res
}

func summarize(rpc string, s []sample, elapsed time.Duration) rpcStats {
	st := rpcStats{RPC: rpc, Ops: len(s)}
	ds := make([]time.Duration, 0, len(s))
	var sum time.Duration
	for _, x := range s {
		if x.err {
			st.Errors++
		}
		ds = append(ds, x.d)
		sum += x.d
	}
	if len(ds) == 0 {
		return st
	}
	slices.Sort(ds)
	q := func(p float64) float64 {
		return float64(ds[min(len(ds)-1, int(p*float64(len(ds))))]) / float64(time.Millisecond)
	}
	st.OpsPerSec = float64(len(s)-st.Errors) / elapsed.Seconds()
	st.MeanMs = float64(sum) / float64(len(ds)) / float64(time.Millisecond)
	st.P50ms, st.P90ms, st.P99ms, st.P999ms = q(0.50), q(0.90), q(0.99), q(0.999)
	return st
}
