package redistest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the master name the Sentinel group monitors.
const SentinelMaster = "sessiond-test"

// SentinelGroup is a master, its replica and three sentinels, real processes
// started by a test, stopped at its end.
type SentinelGroup struct {
	tb        testing.TB
	Master    *Server // the master at start; after a failover, Replica is
	Replica   *Server
	Sentinels []*Server
}

// StartSentinel starts the group with a 1s down-after (so a failover takes
// a few seconds) and waits until the replica is in sync and every sentinel
// knows the replica and the two other sentinels. Extra args go to the master
// and the replica.
func StartSentinel(tb testing.TB, args ...string) *SentinelGroup {
	tb.Helper()
	return StartSentinelDownAfter(tb, time.Second, args...)
}

// StartSentinelDownAfter is StartSentinel with the sentinels'
// down-after-milliseconds set to downAfter: a group that no test fails over
// takes a longer one, so that a busy machine (a master slow to answer a
// sentinel's PING) does not trigger a failover.
func StartSentinelDownAfter(tb testing.TB, downAfter time.Duration, args ...string) *SentinelGroup {
	tb.Helper()
	return startSentinel(tb, downAfter, 5*time.Second, args...)
}

// StartSentinelRepeated is StartSentinel for a test that fails the group
// over again and again: a sentinel does not fail the same master over twice
// within two failover timeouts, 1s here (5s otherwise).
func StartSentinelRepeated(tb testing.TB, args ...string) *SentinelGroup {
	tb.Helper()
	return startSentinel(tb, time.Second, time.Second, args...)
}

func startSentinel(tb testing.TB, downAfter, failoverTimeout time.Duration, args ...string) *SentinelGroup {
	tb.Helper()
	g := &SentinelGroup{tb: tb}
	nodeArgs := append([]string{"--repl-diskless-sync-delay", "0"}, args...)
	g.Master = Start(tb, nodeArgs...)
	g.Replica = Start(tb, append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(g.Master.Port())}, nodeArgs...)...)
	waitReplicaSynced(tb, g.Replica)
	for range 3 {
		s := &Server{tb: tb, bin: Binary(tb), dir: tb.TempDir()}
		s.argv = func() []string {
			conf := filepath.Join(s.dir, "sentinel.conf")
			// Sentinel rewrites its config file: write it anew at every start.
			m := SentinelMaster
			body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n", s.port, s.dir, filepath.Join(s.dir, "redis.log")) +
				fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2\n", m, g.Master.Port()) +
				fmt.Sprintf("sentinel down-after-milliseconds %s %d\nsentinel failover-timeout %s %d\nsentinel parallel-syncs %s 1\n", m, downAfter.Milliseconds(), m, failoverTimeout.Milliseconds(), m)
			if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
				tb.Fatal(err)
			}
			return []string{conf, "--sentinel"}
		}
		g.Sentinels = append(g.Sentinels, startServer(tb, s, func() int { return FreePort(tb) }))
	}
	g.waitDiscovered(30 * time.Second)
	return g
}

// Addrs are the sentinels' addresses.
func (g *SentinelGroup) Addrs() []string {
	var out []string
	for _, s := range g.Sentinels {
		out = append(out, s.Addr())
	}
	return out
}

func (g *SentinelGroup) waitDiscovered(timeout time.Duration) {
	g.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		why := ""
		for _, s := range g.Sentinels {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
			replicas, err1 := sc.Replicas(ctx, SentinelMaster).Result()
			others, err2 := sc.Sentinels(ctx, SentinelMaster).Result()
			sc.Close()
			cancel()
			if err1 != nil || err2 != nil || len(replicas) != 1 || len(others) != 2 {
				why = fmt.Sprintf("sentinel %s knows %d replicas, %d other sentinels (%v %v)", s.Addr(), len(replicas), len(others), err1, err2)
				break
			}
		}
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			g.tb.Fatalf("redistest: sentinels not ready after %v: %s", timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitReplicaSynced waits until the replica's link is up and its offset has
// caught up with its master's.
func waitReplicaSynced(tb testing.TB, replica *Server) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		rc := replica.nodeClient()
		info, err := rc.Info(ctx, "replication").Result()
		rc.Close()
		cancel()
		if err == nil && infoField(info, "master_link_status") == "up" && infoField(info, "master_sync_in_progress") == "0" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redistest: replica %s not in sync after 30s: %v\n%s", replica.Addr(), err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CurrentMaster returns the node the sentinels name as master now (Master
// or Replica), or nil if they do not agree on one of them.
func (g *SentinelGroup) CurrentMaster(tb testing.TB) *Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var found *Server
	for _, s := range g.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
		addr, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
		sc.Close()
		if err != nil || len(addr) != 2 {
			return nil
		}
		var node *Server
		for _, n := range []*Server{g.Master, g.Replica} {
			if strconv.Itoa(n.Port()) == addr[1] {
				node = n
			}
		}
		if node == nil || (found != nil && found != node) {
			return nil
		}
		found = node
	}
	return found
}

// Other returns the node of the pair that n is not.
func (g *SentinelGroup) Other(n *Server) *Server {
	if n == g.Master {
		return g.Replica
	}
	return g.Master
}

// WaitFailover waits (at most timeout) until every sentinel names the other
// node than old as master, and that node says it is one.
func (g *SentinelGroup) WaitFailover(tb testing.TB, old *Server, timeout time.Duration) *Server {
	tb.Helper()
	want := g.Other(old)
	deadline := time.Now().Add(timeout)
	for {
		if g.CurrentMaster(tb) == want && want.roleIs("master") {
			return want
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redistest: no failover from %s to %s within %v", old.Addr(), want.Addr(), timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitReplicaOf waits (at most timeout) until replica is a replica of
// master, in sync: what a restarted old master becomes once the sentinels
// have reconfigured it.
func (g *SentinelGroup) WaitReplicaOf(tb testing.TB, replica, master *Server, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		rc := replica.nodeClient()
		info, err := rc.Info(ctx, "replication").Result()
		rc.Close()
		cancel()
		if err == nil && infoField(info, "role") == "slave" && infoField(info, "master_port") == strconv.Itoa(master.Port()) &&
			infoField(info, "master_link_status") == "up" && infoField(info, "master_sync_in_progress") == "0" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redistest: %s not a replica of %s in sync within %v: %v\n%s", replica.Addr(), master.Addr(), timeout, err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// roleIs reports whether the node answers INFO with this role.
func (s *Server) roleIs(role string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c := s.nodeClient()
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	return err == nil && infoField(info, "role") == role
}

// RestartAsReplicaOf restarts the node (stopped or killed) as a replica of
// master, with its other arguments unchanged: an old master coming back
// after a failover, without waiting for the sentinels to reconfigure it.
func (s *Server) RestartAsReplicaOf(master *Server) {
	s.tb.Helper()
	s.Stop()
	var args []string
	for i := 0; i < len(s.args); i++ {
		if s.args[i] == "--replicaof" && i+2 < len(s.args) {
			i += 2
			continue
		}
		args = append(args, s.args[i])
	}
	s.args = append(args, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port()))
	s.Restart()
}
