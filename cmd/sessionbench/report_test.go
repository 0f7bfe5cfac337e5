package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
)

func TestPairedRatioPairsEachRoundsRuns(t *testing.T) {
	run := func(w string, c int, ops, p99 float64) runResult {
		return runResult{Workload: w, Concurrency: c, Total: rpcStats{OpsPerSec: ops, P99ms: p99}}
	}
	// Three rounds; the machine is slow in the second, which halves both
	// figures of that round. Each round's ratio is 1.1, 1.1 and 0.9: their
	// median is 1.1; the ratio of the medians (900 / 1000 = 0.9) would pair
	// round 3's validate with round 1's floor.
	var runs []runResult
	for _, r := range [][4]float64{{1100, 1000, 2, 4}, {550, 500, 3, 3}, {900, 1000, 4, 2}} {
		runs = append(runs,
			run("grpc-hgetall", 16, r[1], r[3]),
			run("validate", 16, r[0], r[2]),
			run("validate", 64, 1, 1), // another concurrency: not paired
		)
	}
	if got, want := pairedRatios(runs, "validate", "grpc-hgetall", 16, false), []float64{1.1, 1.1, 0.9}; !near(got, want) {
		t.Errorf("throughput ratios = %v; want %v, one a round", got, want)
	}
	if got, want := pairedRatios(runs, "validate", "grpc-hgetall", 16, true), []float64{0.5, 1, 2}; !near(got, want) {
		t.Errorf("p99 ratios = %v; want %v", got, want)
	}
	if got := pairedRatios(runs, "validate", "absent", 16, false); len(got) > 0 {
		t.Errorf("ratios to a workload that did not run = %v, want none", got)
	}

	// The report gives each ratio's median and the rounds' range.
	s := &setupReport{Runs: runs}
	s.summarize(&benchConfig{concurrency: []int{16, 64}, workloads: []string{"grpc-hgetall", "validate"}})
	for name, want := range map[string][3]float64{
		"validate/grpc-hgetall throughput @16": {1.1, 0.9, 1.1},
		"validate/grpc-hgetall p99 @16":        {1, 0.5, 2},
	} {
		got, ok := s.Ratios[name]
		rg, rok := s.RatioRanges[name]
		if !ok || !rok || !near([]float64{got, rg[0], rg[1]}, want[:]) {
			t.Errorf("%s = %v %v (%v, %v); want the median %v and the range %v", name, got, rg, ok, rok, want[0], want[1:])
		}
	}
	if got, ok := s.Ratios["validate/grpc-hgetall throughput @64"]; ok {
		t.Errorf("a ratio at 64 callers, where no floor ran: %v", got)
	}
	if rg, ok := s.RatioRanges[directReadsRatio+" @16"]; ok {
		t.Errorf("a count has a range: %v", rg)
	}
}

// near reports whether a and b hold the same numbers, to 1e-9.
func near(a, b []float64) bool {
	return slices.EqualFunc(a, b, func(x, y float64) bool { return math.Abs(x-y) < 1e-9 })
}

func TestSummarizeCountsValidateReads(t *testing.T) {
	cfg := &benchConfig{concurrency: []int{1, 16}, workloads: []string{"validate"}}
	s := &setupReport{Runs: []runResult{
		{Workload: "validate", Concurrency: 1, Reads: &readCount{Direct: 1000}},
		{Workload: "validate", Concurrency: 16, Reads: &readCount{Direct: 100, Pipelined: 700, Pipelines: 200}},
		{Workload: "validate", Concurrency: 16, Reads: &readCount{Direct: 100, Pipelined: 1100, Pipelines: 200}},
	}}
	s.summarize(cfg)
	for name, want := range map[string]float64{
		directReadsRatio + " @1":  1,
		directReadsRatio + " @16": 200.0 / 2000,
		batchRatio + " @16":       1800.0 / 400,
	} {
		if got, ok := s.Ratios[name]; !ok || math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, %v; want %v", name, got, ok, want)
		}
	}
	if got, ok := s.Ratios[batchRatio+" @1"]; ok {
		t.Errorf("%s @1 = %v with no pipeline, want none", batchRatio, got)
	}
}

func TestSummarizeCountsCacheMisses(t *testing.T) {
	cfg := &benchConfig{concurrency: []int{1, 16}, workloads: []string{"protected-cache"}}
	s := &setupReport{Runs: []runResult{
		{Workload: "protected-cache", Concurrency: 1, CacheMisses: &missCount{Validations: 0, Calls: 5000}},
		{Workload: "protected-cache", Concurrency: 16, CacheMisses: &missCount{Validations: 30, Calls: 20000}},
		{Workload: "protected-cache", Concurrency: 16, CacheMisses: &missCount{Validations: 10, Calls: 20000}},
	}}
	s.summarize(cfg)
	for name, want := range map[string]float64{missRatio + " @1": 0, missRatio + " @16": 40.0 / 40000} {
		if got, ok := s.Ratios[name]; !ok || math.Abs(got-want) > 1e-12 {
			t.Errorf("%s = %v, %v; want %v", name, got, ok, want)
		}
	}
}

func TestAlternatingSpeedComparesEachRunsCalls(t *testing.T) {
	run := func(c int, floorMs, validateMs float64) runResult {
		return runResult{Workload: "alternating", Concurrency: c, PerRPC: []rpcStats{
			{RPC: "Floor/Get", MeanMs: floorMs}, {RPC: "ValidateSession", MeanMs: validateMs},
		}}
	}
	cfg := &benchConfig{concurrency: []int{1, 16}, workloads: []string{"alternating", "cache-alternating"}}
	s := &setupReport{Runs: []runResult{
		run(1, 0.30, 0.32), run(1, 0.60, 0.50), run(1, 0.33, 0.30), // a slow second round
		run(16, 1.0, 0.8),
		{Workload: "validate", Concurrency: 1, Total: rpcStats{OpsPerSec: 90}, PerRPC: []rpcStats{{RPC: "ValidateSession", MeanMs: 9}}},
		{Workload: "grpc-hgetall", Concurrency: 1, Total: rpcStats{OpsPerSec: 100}},
		{Workload: "alternating", Concurrency: 64, PerRPC: []rpcStats{{RPC: "Floor/Get", MeanMs: 1}}}, // no validation
		{Workload: "cache-alternating", Concurrency: 16, PerRPC: []rpcStats{{RPC: "unprotected", MeanMs: 0.9}, {RPC: "protected-cache", MeanMs: 1.0}}},
	}}
	s.summarize(cfg)
	validate, cache := alternatingDefs[0].name, alternatingDefs[1].name
	for name, want := range map[string]float64{validate + " @1": 0.33 / 0.30, validate + " @16": 1.25, cache + " @16": 0.9} {
		if got, ok := s.Ratios[name]; !ok || math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, %v; want %v", name, got, ok, want)
		}
	}
	if got := alternatingSpeeds(s.Runs, "alternating", "ValidateSession", "Floor/Get", 64); len(got) > 0 {
		t.Errorf("a run without validations gave %v, want no ratio", got)
	}
	if rg, want := s.RatioRanges[validate+" @1"], []float64{0.30 / 0.32, 0.60 / 0.50}; !near(rg[:], want) {
		t.Errorf("%s @1 ranges over %v; want the rounds' lowest and highest, %v", validate, rg, want)
	}
	if got, ok := s.Ratios[cache+" @1"]; ok {
		t.Errorf("%s @1 = %v with no such run, want none", cache, got)
	}
	names := (&report{Concurrency: cfg.concurrency, Setups: []*setupReport{s}}).ratioNames()
	if i := slices.Index(names, validate); i < 1 || names[i-1] != "validate/grpc-hgetall throughput" {
		t.Errorf("ratio names %q: want %q right after validate/grpc-hgetall throughput", names, validate)
	}
}

func TestAlternateTakesTurns(t *testing.T) {
	var calls []string
	call := func(name string) op {
		return func(_ context.Context, w, i int) (string, error) {
			calls = append(calls, fmt.Sprintf("%s %d/%d", name, w, i))
			return name + "-rpc", nil
		}
	}
	alt := alternate(call("a"), call("b"))
	var rpcs []string
	for i := range 4 {
		rpc, _ := alt(context.Background(), 3, i)
		rpcs = append(rpcs, rpc)
	}
	if want := []string{"a 3/0", "b 3/0", "a 3/1", "b 3/1"}; !slices.Equal(calls, want) {
		t.Errorf("calls %q, want %q", calls, want)
	}
	if want := []string{"a-rpc", "b-rpc", "a-rpc", "b-rpc"}; !slices.Equal(rpcs, want) {
		t.Errorf("RPC names %q, want %q", rpcs, want)
	}
}
