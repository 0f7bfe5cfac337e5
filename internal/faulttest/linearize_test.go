package faulttest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/linearize"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/sessiondtest"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/store"
)

// The linearizability runs: 16 clients call sessiond through gRPC for a
// bounded set of users, a fault happens under them, and the recorded history
// is checked with porcupine against the model of internal/linearize (see its
// package documentation). Each run requires 0 violations; on one, the test
// fails naming porcupine's HTML visualisation of the history.

// linCap is the per-user cap of the runs' sessiond: small, so that the cap
// evicts sessions all the time.
const linCap = 3

// startLinearizable runs sessiond in-process on rdb for a linearizability
// run: a cap of linCap sessions per user, no idle timeout and the default
// 24h lifetime (nothing expires during a run), a rotation grace longer than
// a run (no reuse detection behind the model's back), a request timeout of
// 1s, and acks replica acknowledgements per write.
func startLinearizable(t *testing.T, rdb redis.UniversalClient, acks int) sessionauthv1.SessionAuthorityClient {
	t.Helper()
	d := sessiondtest.StartWith(t, rdb, sessiondtest.Options{
		Store: store.Config{
			KeyPrefix: keyPrefix, MaxSessionsPerUser: linCap, TouchInterval: time.Minute, RotationGrace: time.Hour,
			MinReplicaAcks: acks, ReplicaAckTimeout: 300 * time.Millisecond,
		},
		Server: server.Config{RequestTimeout: time.Second, DefaultIdleTimeout: -1},
	})
	t.Cleanup(func() {
		if t.Failed() {
			logTail(t, d.Logs.String(), 20)
		}
	})
	return sessionauthv1.NewSessionAuthorityClient(d.Conn)
}

// linWorkload is the runs' workload: 16 clients, users, each client
// bounded to maxCalls calls and 40s (a safety bound: each run stops its
// recording once the fault has played out).
func linWorkload(users []string, maxCalls int) linearize.Workload {
	return linearize.Workload{Users: users, Clients: 16, MaxCalls: maxCalls, MaxTime: 40 * time.Second}
}

// warmUp waits until the recording has n acknowledged writes.
func warmUp(t *testing.T, r *linearize.Recorder, n int64) {
	t.Helper()
	waitFor(t, 15*time.Second, "the load's warm-up", func() bool { _, acked := r.Progress(); return acked >= n })
}

// settle waits until the recording has n more acknowledged writes than
// now: calls on the recovered deployment, however slow the machine.
func settle(t *testing.T, r *linearize.Recorder, n int64) {
	t.Helper()
	_, from := r.Progress()
	waitFor(t, 15*time.Second, "calls after the recovery", func() bool { _, acked := r.Progress(); return acked >= from+n })
}

// answeredSince reports whether a call for one of users sent after since has
// been answered; acknowledgedSince, a write.
func answeredSince(r *linearize.Recorder, users []string, since time.Time) bool {
	for _, u := range users {
		if r.Answered(u).After(since) {
			return true
		}
	}
	return false
}

func acknowledgedSince(r *linearize.Recorder, users []string, since time.Time) bool {
	for _, u := range users {
		if r.Acknowledged(u).After(since) {
			return true
		}
	}
	return false
}

// requireLinearizable checks the history h.
func requireLinearizable(t *testing.T, h linearize.History, events ...linearize.Event) *linearize.Result {
	t.Helper()
	res := linearize.Require(t, h, linearize.Config{Cap: linCap, Events: events})
	f := res.Figures
	if f.Outcomes[linearize.Create][linearize.OK] < 100 || f.Outcomes[linearize.Validate][linearize.OK] < 50 {
		t.Errorf("the run acknowledged %d creates and %d validations: too few to check anything", f.Outcomes[linearize.Create][linearize.OK], f.Outcomes[linearize.Validate][linearize.OK])
	}
	if f.Evicted == 0 {
		t.Error("no session was seen evicted: the cap was not exercised")
	}
	return res
}

// TestLinearizableSingle records a history on a single Redis, with no
// fault: the plain case, which must be linearizable too (concurrent writes
// to one user, evictions, rotations, lists).
func TestLinearizableSingle(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := startLinearizable(t, singleClient(t, srv.Addr()), 0)
	w := linWorkload(users("lin-single", 10), 250)
	w.MaxTime = 4 * time.Second
	r := linearize.Record(c, w)
	t.Cleanup(func() { r.Stop() })
	requireLinearizable(t, r.Wait())
}

// TestLinearizableAOFRestart kills (SIGKILL) a Redis that runs with
// appendonly yes and appendfsync always in the middle of the recording, and
// restarts it (the AOF is replayed): acknowledged writes must survive, and
// the writes in flight at the kill may or may not have happened.
func TestLinearizableAOFRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	c := startLinearizable(t, singleClient(t, srv.Addr()), 0)
	all := users("lin-aof", 10)
	r := linearize.Record(c, linWorkload(all, 1500))
	t.Cleanup(func() { r.Stop() })
	warmUp(t, r, 300)

	killed := time.Now()
	srv.Kill()
	// Down longer than sessiond's request timeout (1s), so that calls fail
	// rather than ride out the outage in go-redis' retries.
	time.Sleep(1500 * time.Millisecond)
	srv.Restart()
	restarted := time.Now()
	waitFor(t, 15*time.Second, "a write acknowledged after the restart", func() bool { return acknowledgedSince(r, all, restarted) })
	back := time.Now()
	settle(t, r, 200)
	res := requireLinearizable(t, r.Stop(),
		linearize.Event{At: killed, What: "Redis killed (SIGKILL)"},
		linearize.Event{At: restarted, What: "Redis restarted, AOF replayed"})
	t.Logf("Redis down %v; writes acknowledged again %v after the restart", restarted.Sub(killed).Round(time.Millisecond), back.Sub(restarted).Round(time.Millisecond))
	if res.Figures.Indeterminate == 0 {
		t.Error("no write failed around the kill: was Redis really killed?")
	}
}

// userKey is the Redis key of user's session index (server/store's layout),
// to find the master that serves the user.
func userKey(user string) string {
	sum := sha256.Sum256([]byte(user))
	return keyPrefix + ":v1:{" + hex.EncodeToString(sum[:4]) + "}:u:" + user
}

// TestLinearizableClusterMasterLoss kills (SIGKILL) one master of a Redis
// Cluster of 3 masters, each with a replica, under the recording, through a
// sessiond with --min-replica-acks 1 (so that an acknowledged write is on
// the replica that takes over). Its replica is promoted; the killed node
// then comes back as a new, empty node and becomes the new master's replica,
// so that the affected users' writes are acknowledged again.
func TestLinearizableClusterMasterLoss(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3, 1, "--cluster-require-full-coverage", "no")
	c := startLinearizable(t, clusterClient(t, cl.Addrs(), time.Second), 1)
	all := users("lin-cluster", 12)
	// The victim: a master that serves some users but not the revoke-all
	// cutoff (whose loss fails every validation closed for a while: that
	// case is TestClusterMasterLoss's).
	cutoff := cl.MasterOf(keyPrefix + ":v1:cutoff")
	var victim *redistest.Server
	var affected []string
	for _, u := range all {
		if m := cl.MasterOf(userKey(u)); m != cutoff && (victim == nil || m == victim) {
			victim = m
			affected = append(affected, u)
		}
	}
	if victim == nil || len(affected) == len(all) {
		t.Fatalf("no master serves some users but not all and not the cutoff: %d users on %v", len(affected), victim)
	}

	r := linearize.Record(c, linWorkload(all, 1500))
	t.Cleanup(func() { r.Stop() })
	warmUp(t, r, 300)

	killed := time.Now()
	victim.Kill()
	waitFor(t, 20*time.Second, "the killed master's users answered again (failover)", func() bool { return answeredSince(r, affected, killed) })
	failedOver := time.Now()
	var promoted *redistest.Server
	waitFor(t, 10*time.Second, "the slot map naming the promoted replica", func() bool {
		promoted = cl.MasterOf(userKey(affected[0]))
		return promoted != victim
	})
	rejoinAsReplica(t, victim, promoted)
	rejoined := time.Now()
	waitFor(t, 15*time.Second, "a write of the killed master's users acknowledged again", func() bool { return acknowledgedSince(r, affected, rejoined) })
	back := time.Now()
	settle(t, r, 200)
	res := requireLinearizable(t, r.Stop(),
		linearize.Event{At: killed, What: "master " + victim.Addr() + " killed (SIGKILL)"},
		linearize.Event{At: failedOver, What: "its users answered by the promoted replica"},
		linearize.Event{At: rejoined, What: "the killed node back, a replica of the new master"})
	t.Logf("%d of %d users on the killed master; answered again %v after the kill; node back as a replica %v after; "+
		"their writes acknowledged again %v after", len(affected), len(all), failedOver.Sub(killed).Round(time.Millisecond),
		rejoined.Sub(killed).Round(time.Millisecond), back.Sub(killed).Round(time.Millisecond))
	if res.Figures.Indeterminate == 0 {
		t.Error("no write failed around the kill: was the master really killed?")
	}
}

// rejoinAsReplica brings a killed Cluster node back as a new node (its
// nodes.conf removed, so that it does not claim its old slots for a moment
// with no data) and makes it a replica of master, in sync.
func rejoinAsReplica(t *testing.T, node, master *redistest.Server) {
	t.Helper()
	if err := os.Remove(filepath.Join(node.Dir(), "nodes.conf")); err != nil {
		t.Fatal(err)
	}
	node.Restart()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, mc := node.Client(t), master.Client(t)
	masterID, err := mc.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatalf("CLUSTER MYID on %s: %v", master.Addr(), err)
	}
	if err := nc.ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(master.Port())).Err(); err != nil {
		t.Fatalf("CLUSTER MEET: %v", err)
	}
	// The new node learns the master's id by gossip.
	waitFor(t, 15*time.Second, "the rejoined node accepting CLUSTER REPLICATE", func() bool {
		return nc.Do(ctx, "CLUSTER", "REPLICATE", masterID).Err() == nil
	})
	waitFor(t, 15*time.Second, "the rejoined node in sync", func() bool {
		return node.Info(t, "replication", "master_link_status") == "up" && node.Info(t, "replication", "master_sync_in_progress") == "0"
	})
}

// TestLinearizableSentinelFailover kills (SIGKILL) the master of a Sentinel
// group (a master, a replica, three sentinels) under the recording, through
// a sessiond with --min-replica-acks 1. The sentinels promote the replica;
// the old master comes back as its replica, and writes are acknowledged
// again.
func TestLinearizableSentinelFailover(t *testing.T) {
	t.Parallel()
	g := redistest.StartSentinel(t)
	c := startLinearizable(t, failoverClient(t, redistest.SentinelMaster, g.Addrs()), 1)
	all := users("lin-sentinel", 10)
	r := linearize.Record(c, linWorkload(all, 1500))
	t.Cleanup(func() { r.Stop() })
	warmUp(t, r, 300)

	old := g.Master
	killed := time.Now()
	old.Kill()
	next := g.WaitFailover(t, old, 30*time.Second)
	promoted := time.Now()
	waitFor(t, 15*time.Second, "calls answered by the promoted replica", func() bool { return answeredSince(r, all, promoted) })
	answered := time.Now()
	old.RestartAsReplicaOf(next)
	g.WaitReplicaOf(t, old, next, 30*time.Second)
	rejoined := time.Now()
	waitFor(t, 15*time.Second, "a write acknowledged again", func() bool { return acknowledgedSince(r, all, rejoined) })
	settle(t, r, 200)
	res := requireLinearizable(t, r.Stop(),
		linearize.Event{At: killed, What: "master killed (SIGKILL)"},
		linearize.Event{At: promoted, What: "sentinels promoted the replica"},
		linearize.Event{At: rejoined, What: "old master back as a replica"})
	t.Logf("failover %v after the kill, calls answered %v after, old master in sync as a replica %v after",
		promoted.Sub(killed).Round(time.Millisecond), answered.Sub(killed).Round(time.Millisecond), rejoined.Sub(killed).Round(time.Millisecond))
	if res.Figures.Indeterminate == 0 {
		t.Error("no write failed around the kill: was the master really killed?")
	}
}
