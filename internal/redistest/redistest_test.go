package redistest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestCluster(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer cc.Close()
	for i := range 100 {
		if err := cc.Set(ctx, fmt.Sprint("k", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Keys of one hash tag go through one transaction; others do not.
	if _, err := cc.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "{u}:a", 1, 0)
		p.Set(ctx, "{u}:b", 1, 0)
		return nil
	}); err != nil {
		t.Fatalf("same-tag transaction: %v", err)
	}
	if m := c.MasterOf("{u}:a"); m == nil || !m.Running() {
		t.Fatal("no master for a key")
	}
}

func TestSentinel(t *testing.T) {
	t.Parallel()
	g := StartSentinel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fc := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: SentinelMaster, SentinelAddrs: g.Addrs()})
	defer fc.Close()
	if err := fc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got := fc.Get(ctx, "k").Val(); got != "v" {
		t.Fatalf("got %q", got)
	}
}
