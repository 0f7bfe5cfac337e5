package redistest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestLaunchCluster(t *testing.T) {
	t.Parallel()
	c, stop, err := LaunchCluster(3, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop) // in case of failure; stop is idempotent
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer cc.Close()
	if err := cc.Set(ctx, "{u}:a", 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	dir := c.Nodes[0].Dir()
	stop()
	for _, n := range c.Nodes {
		if n.Running() {
			t.Fatalf("node %s still running after stop", n.Addr())
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("node directory %s left after stop (%v)", dir, err)
	}
	stop()
}

func TestLaunchSentinel(t *testing.T) {
	t.Parallel()
	g, stop, err := LaunchSentinel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fc := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: SentinelMaster, SentinelAddrs: g.Addrs()})
	defer fc.Close()
	if err := fc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	stop()
	for _, s := range append([]*Server{g.Master, g.Replica}, g.Sentinels...) {
		if s.Running() {
			t.Fatalf("%s still running after stop", s.Addr())
		}
	}
}

// A launch that fails returns an error, leaves nothing running, and does not
// panic.
func TestLaunchClusterFails(t *testing.T) {
	t.Parallel()
	_, _, err := LaunchCluster(3, 0, "--no-such-option", "x")
	if err == nil || !strings.Contains(err.Error(), "cannot start redis-server") {
		t.Fatalf("err = %v, want a start failure", err)
	}
}
