package main

import (
	"os"
	"testing"
	"time"
)

func TestCPUTimeGrowsWithWork(t *testing.T) {
	before, err := cpuTime(os.Getpid())
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x += i
		}
		now, err := cpuTime(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now-before >= 50*time.Millisecond {
			m := &cpuMeter{}
			m.add(roleSessiond, os.Getpid())
			a := m.sample()
			if a[roleLoad] < now || a[roleSessiond] < now {
				t.Fatalf("sample %v, want both roles at least %v", a, now)
			}
			got := perCall(map[string]time.Duration{roleLoad: 0, roleSessiond: time.Millisecond}, map[string]time.Duration{roleLoad: 2 * time.Millisecond, roleSessiond: 3 * time.Millisecond}, 4)
			if got[roleLoad] != 500 || got[roleSessiond] != 500 || got[roleTotal] != 1000 {
				t.Fatalf("perCall = %v, want 500 µs each, 1000 in all", got)
			}
			return
		}
	}
	t.Fatalf("CPU time grew by less than 50ms in 5s of spinning (%d)", x)
}
