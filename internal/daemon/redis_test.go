package daemon

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRedisClientsReadFromMastersOnly pins the options that keep every read
// on a master: a replica may still hold a session its master revoked.
func TestRedisClientsReadFromMastersOnly(t *testing.T) {
	t.Parallel()
	for _, cfg := range []RedisConfig{
		{ClusterAddrs: []string{"127.0.0.1:1", "127.0.0.1:2"}},
		{SentinelAddrs: []string{"127.0.0.1:1"}, SentinelMaster: "m"},
	} {
		rdb, closeRedis, err := newRedis(cfg.withDefaults(), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		switch c := rdb.(type) {
		case *redis.ClusterClient:
			if o := c.Options(); o.ReadOnly || o.RouteByLatency || o.RouteRandomly || !o.ContextTimeoutEnabled {
				t.Errorf("cluster client may read from replicas or ignores deadlines: %+v", o)
			}
		case *redis.Client: // the failover client
			if o := c.Options(); !o.ContextTimeoutEnabled {
				t.Errorf("failover client ignores deadlines")
			}
		default:
			t.Errorf("%+v: unexpected client %T", cfg, rdb)
		}
		closeRedis()
	}
}

func TestEmbeddedStoreExpiresKeys(t *testing.T) {
	t.Parallel()
	rdb, closeRedis, err := newRedis(RedisConfig{}.withDefaults(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer closeRedis()
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "v", 100*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if n := rdb.Exists(ctx, "k").Val(); n != 0 {
		t.Fatal("a key outlived its TTL in the embedded store")
	}
}
