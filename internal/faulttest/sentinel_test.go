package faulttest

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sessiond/sessiond/internal/redistest"
)

// TestSentinelFailover kills (SIGKILL) the master of a Sentinel group (a
// master, a replica, three sentinels) under load through sessiond: every call
// fails with Unavailable until the sentinels promote the replica and
// sessiond's failover client follows, then writes resume; revocations
// acknowledged before the kill stay revoked.
//
// Replication is asynchronous: a write the master acknowledged but had not
// yet sent to its replica is lost with it. The test marks the replication
// offset (a write and WAIT 1) just before the kill, asserts on every write
// acknowledged before the mark, and counts the ones in between.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	g := redistest.StartSentinel(t)
	rdb := failoverClient(t, redistest.SentinelMaster, g.Addrs())
	c, d := startSessiond(t, rdb, time.Second, 100*time.Millisecond)
	hc := healthpb.NewHealthClient(d.Conn)
	hw := watchHealth(t, hc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	all := users("sentinel-user", 24)
	firstResp, err := create(ctx, c, all[0])
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	first := firstResp.GetToken()

	l := startLoad(t, c, loadConfig{users: all, workers: 4, maxCalls: 20_000, maxTime: 40 * time.Second, pause: 10 * time.Millisecond})
	waitFor(t, 10*time.Second, "load warm-up", func() bool { return l.created.Load() >= 300 })

	mark := markReplicated(t, g.Master.Addr(), "faulttest:mark")
	fault := time.Now()
	g.Master.Kill()
	killed := time.Now()
	t.Logf("killed master %s, %v after the replication mark", g.Master.Addr(), killed.Sub(mark).Round(time.Microsecond))

	probes := probe(t, c, all[0], first, 30*time.Second)
	resumed := time.Now()
	// Writes resume too, on the promoted replica.
	waitFor(t, 10*time.Second, "a write after the failover", func() bool {
		_, err := create(ctx, c, all[1])
		return err == nil
	})
	writesBack := time.Now()
	time.Sleep(500 * time.Millisecond) // load on the new master
	calls, sessions, violations := l.result()
	calls = append(calls, probes...)
	reportViolations(t, violations)

	everyone := func(string) bool { return true }
	gp := measureGap(calls, fault, everyone)
	gp.log(t, fault, "all users")
	if gp.failures == 0 {
		t.Error("no call failed while the master was down: was it really killed?")
	}
	t.Logf("first validation %v after the kill, first write %v after", resumed.Sub(fault).Round(time.Millisecond), writesBack.Sub(fault).Round(time.Millisecond))
	waitServing(t, hc, hw, fault, 10*time.Second)
	if n, back := hw.after(fault); back.IsZero() {
		t.Errorf("health: NOT_SERVING %d times after the kill, and not SERVING again", n)
	} else {
		t.Logf("health: NOT_SERVING %d times after the kill; SERVING for good %v after it", n, back.Sub(fault).Round(time.Millisecond))
	}
	t.Logf("codes after the kill: %v", countCodes(calls, func(c call) bool { return !c.start.Before(fault) }))
	if got := g.Replica.Info(t, "replication", "role"); got != "master" {
		t.Errorf("the replica's role after failover is %q, want master", got)
	}

	trusted := func(_ *session, at time.Time) bool { return at.Before(mark) || at.After(killed) }
	v := verify(t, c, sessions, trusted)
	t.Logf("after failover: %d acknowledged revocations still revoked, %d acknowledged creates still valid; "+
		"%d writes in the replication window (%d revocations undone, %d creates lost); %d with a failed revoke skipped; %d calls in all",
		v.revoked, v.live, v.untrusted, v.resurrected, v.lost, v.skipped, len(calls))
	if v.revoked == 0 || v.live == 0 {
		t.Errorf("the load checked %d revocations and %d creates: too few", v.revoked, v.live)
	}
	if code := validate(ctx, c, first); code != codes.OK {
		t.Errorf("the session made before the load: %v after failover, want OK", code)
	}
}
