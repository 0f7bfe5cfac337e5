package redistest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of real redis-server processes started by a
// test: masters with replicas, on loopback ports, stopped at the test's end.
type Cluster struct {
	tb    testing.TB
	Nodes []*Server
}

// StartCluster starts masters*(1+replicas) nodes with a 1s node timeout (so
// that a failover takes a couple of seconds), creates the cluster with
// redis-cli, and waits until every node reports it healthy and every replica
// is in sync. Extra args go to every node.
func StartCluster(tb testing.TB, masters, replicas int, args ...string) *Cluster {
	tb.Helper()
	cli := cliBinary(tb)
	c := &Cluster{tb: tb}
	nodeArgs := append([]string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", "1000",
		"--repl-diskless-sync-delay", "0",
	}, args...)
	var addrs []string
	for range masters * (1 + replicas) {
		s := startServer(tb, &Server{tb: tb, bin: Binary(tb), dir: tb.TempDir(), args: nodeArgs}, func() int { return clusterPort(tb) })
		c.Nodes = append(c.Nodes, s)
		addrs = append(addrs, s.Addr())
	}
	create := append([]string{"--cluster", "create"}, addrs...)
	create = append(create, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	create = append(create, authArgs(args)...)
	if out, err := exec.Command(cli, create...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(30 * time.Second)
	return c
}

// authArgs turns a --requirepass among node args into redis-cli's -a.
func authArgs(args []string) []string {
	for i, a := range args {
		if a == "--requirepass" && i+1 < len(args) {
			return []string{"-a", args[i+1], "--no-auth-warning"}
		}
	}
	return nil
}

// Addrs are the nodes' addresses, to seed a cluster client.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Addr())
	}
	return out
}

// nodeClient is a plain client of one node (password from the node args).
func (s *Server) nodeClient() *redis.Client {
	opts := &redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 500 * time.Millisecond, ReadTimeout: 2 * time.Second}
	for i, a := range s.args {
		if a == "--requirepass" && i+1 < len(s.args) {
			opts.Password = s.args[i+1]
		}
	}
	return redis.NewClient(opts)
}

// WaitHealthy waits until every running node reports cluster_state:ok with
// all 16384 slots served, and every replica's link to its master is up with
// its offset caught up.
func (c *Cluster) WaitHealthy(timeout time.Duration) {
	c.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		why := c.unhealthy()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("redistest: cluster not healthy after %v: %s", timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Cluster) unhealthy() string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		rc := n.nodeClient()
		info, err := rc.ClusterInfo(ctx).Result()
		if err != nil {
			rc.Close()
			return fmt.Sprintf("%s: %v", n.Addr(), err)
		}
		if infoField(info, "cluster_state") != "ok" || infoField(info, "cluster_slots_ok") != "16384" {
			rc.Close()
			return fmt.Sprintf("%s: cluster_state %s, slots ok %s", n.Addr(), infoField(info, "cluster_state"), infoField(info, "cluster_slots_ok"))
		}
		repl, err := rc.Info(ctx, "replication").Result()
		rc.Close()
		if err != nil {
			return fmt.Sprintf("%s: %v", n.Addr(), err)
		}
		if infoField(repl, "role") == "slave" && infoField(repl, "master_link_status") != "up" {
			return fmt.Sprintf("%s: replica link %s", n.Addr(), infoField(repl, "master_link_status"))
		}
	}
	return ""
}

// MasterOf returns the node that serves key's slot now.
func (c *Cluster) MasterOf(key string) *Server {
	c.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		rc := n.nodeClient()
		slot, err := rc.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			rc.Close()
			continue
		}
		slots, err := rc.ClusterSlots(ctx).Result()
		rc.Close()
		if err != nil {
			continue
		}
		for _, r := range slots {
			if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 0 {
				for _, m := range c.Nodes {
					if m.Addr() == r.Nodes[0].Addr {
						return m
					}
				}
			}
		}
	}
	c.tb.Fatalf("redistest: no master found for %q", key)
	return nil
}

// Running reports whether the server's process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// clusterPort picks a port p such that p and its cluster bus port p+10000 are
// both free (an ephemeral port would leave no room for the bus).
func clusterPort(tb testing.TB) int {
	tb.Helper()
	for range 100 {
		p := 20000 + rand.IntN(25000)
		if portFree(p) && portFree(p+10000) {
			return p
		}
	}
	tb.Fatal("redistest: no free port pair for a cluster node")
	return 0
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

func cliBinary(tb testing.TB) string {
	tb.Helper()
	bin := Binary(tb)
	if cli := filepath.Join(filepath.Dir(bin), "redis-cli"); fileExists(cli) {
		return cli
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		tb.Fatal("redis-cli is not installed (Debian/Ubuntu: apt-get install -y redis-tools)")
	}
	return cli
}

func fileExists(p string) bool {
	_, err := exec.LookPath(p)
	return err == nil
}
