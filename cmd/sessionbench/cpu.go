package main

import (
	"bytes"
	"os"
	"strconv"
	"time"
)

// The processes whose CPU a run accounts, by role: the load generator
// (this process), sessiond, the floors' process and Redis (every node of a
// Cluster together). On two shared cores a ratio of throughputs moves by
// several percent from run to run; the CPU each process spent per call,
// read from /proc around the measured part of each run, moves much less,
// and says which process a difference comes from.
const (
	roleLoad     = "load"
	roleSessiond = "sessiond"
	roleFloors   = "floors"
	roleRedis    = "redis"
	roleTotal    = "total"
)

var cpuRoles = []string{roleLoad, roleSessiond, roleFloors, roleRedis, roleTotal}

// userHZ is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on
// every Linux the bench runs on).
const userHZ = 100

// cpuMeter reads the CPU time of the bench's processes. Its processes are
// added while a setup starts, before any run samples them.
type cpuMeter struct {
	procs map[string][]int // role → pids
}

func (m *cpuMeter) add(role string, pid int) {
	if m.procs == nil {
		m.procs = map[string][]int{}
	}
	m.procs[role] = append(m.procs[role], pid)
}

// sample returns each role's CPU time so far (user and system, all
// threads); a role whose /proc entry cannot be read is left out.
func (m *cpuMeter) sample() map[string]time.Duration {
	out := map[string]time.Duration{}
	pids := map[string][]int{roleLoad: {os.Getpid()}}
	for role, p := range m.procs {
		pids[role] = p
	}
	for role, p := range pids {
		var sum time.Duration
		ok := true
		for _, pid := range p {
			d, err := cpuTime(pid)
			if err != nil {
				ok = false
				break
			}
			sum += d
		}
		if ok {
			out[role] = sum
		}
	}
	return out
}

// cpuTime is a process' utime + stime, fields 14 and 15 of
// /proc/<pid>/stat (after the command name, which may hold spaces).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	if i := bytes.LastIndexByte(b, ')'); i >= 0 {
		b = b[i+1:]
	}
	f := bytes.Fields(b) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, strconv.ErrSyntax
	}
	utime, err := strconv.ParseInt(string(f[11]), 10, 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseInt(string(f[12]), 10, 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// perCall is the CPU each role spent per call between two samples, in
// microseconds, with their total; nil without calls or samples.
func perCall(before, after map[string]time.Duration, calls int) map[string]float64 {
	if calls == 0 || len(before) == 0 {
		return nil
	}
	out := map[string]float64{}
	var total float64
	for role, a := range after {
		b, ok := before[role]
		if !ok {
			continue
		}
		v := float64(a-b) / float64(time.Microsecond) / float64(calls)
		out[role] = v
		total += v
	}
	out[roleTotal] = total
	return out
}
