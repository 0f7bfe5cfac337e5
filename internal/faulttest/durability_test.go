package faulttest

import (
	"context"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/redistest"
)

// TestDurabilityAppendfsyncAlways kills (SIGKILL) a Redis that runs with
// appendonly yes and appendfsync always in the middle of a create/revoke
// load through sessiond, restarts it (the AOF is replayed), and checks the
// ledger: every acknowledged create still validates unless it was revoked,
// and every acknowledged revoke is still revoked: no session comes back to
// life.
func TestDurabilityAppendfsyncAlways(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	rdb := singleClient(t, srv.Addr())
	c, _ := startSessiond(t, rdb, time.Second, 100*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	first, err := create(ctx, c, "durable-user-000")
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	l := startLoad(t, c, loadConfig{users: users("durable-user", 32), workers: 4, maxCalls: 20_000, maxTime: 30 * time.Second, pause: 10 * time.Millisecond})
	waitFor(t, 20*time.Second, "load warm-up", func() bool { return l.created.Load() >= 200 })

	fault := time.Now()
	srv.Kill()
	time.Sleep(500 * time.Millisecond) // the load meets a dead Redis
	restart := time.Now()
	srv.Restart()
	t.Logf("killed Redis after %d acknowledged creates; restarted (AOF replayed, answering) %v after the restart began",
		l.created.Load(), time.Since(restart).Round(time.Millisecond))

	probes := probe(t, c, "durable-user-000", first.GetToken(), 10*time.Second)
	time.Sleep(300 * time.Millisecond) // load on the restarted Redis
	calls, sessions, violations := l.result()
	calls = append(calls, probes...)
	reportViolations(t, violations)

	inFlight := 0
	for _, c := range calls {
		if c.op != opProbe && c.start.Before(fault) && c.end.After(fault) {
			inFlight++
		}
	}
	t.Logf("%d calls were in flight when Redis was killed", inFlight)
	everyone := func(string) bool { return true }
	measureGap(calls, fault, everyone).log(t, fault, "every user")
	t.Logf("codes after the kill: %v", countCodes(calls, func(c call) bool { return !c.start.Before(fault) }))

	v := verify(t, c, sessions, func(*session, time.Time) bool { return true })
	t.Logf("after the restart: %d acknowledged revocations, all still revoked; %d acknowledged creates never revoked, all still valid; "+
		"%d sessions whose revoke failed (either answer right) skipped; %d calls in all", v.revoked, v.live, v.skipped, len(calls))
	if v.revoked == 0 || v.live == 0 {
		t.Errorf("the load checked %d revocations and %d creates: too few", v.revoked, v.live)
	}
}
