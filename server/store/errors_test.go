package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestClusterRedirectionsAreUnavailable: the replies a Cluster gives while
// its slots move (MOVED, and EXECABORT for a transaction whose commands were
// redirected) are "retry later", never an internal error. They are provoked
// here by sending a key to a master that does not own its slot.
func TestClusterRedirectionsAreUnavailable(t *testing.T) {
	t.Parallel()
	cc, ok := clusterBackend.client(t).(*redis.ClusterClient)
	if !ok {
		t.Fatal("the cluster backend's client is not a Cluster client")
	}
	ctx := ctxT(t)
	var redirected atomic.Int32
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		for i := range 64 {
			key := fmt.Sprintf("redirect-%d", i)
			if err := node.Get(ctx, key).Err(); err == nil || errors.Is(err, redis.Nil) {
				continue // this master owns the key's slot
			} else if !redis.HasErrorPrefix(err, "MOVED") {
				return fmt.Errorf("GET %s: %w, want MOVED", key, err)
			} else if got := wrapErr(ctx, "get", err); !errors.Is(got, ErrUnavailable) {
				return fmt.Errorf("MOVED classified as %v, want ErrUnavailable", got)
			}
			_, err := node.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, key, "v", 0)
				return nil
			})
			if err == nil {
				return fmt.Errorf("a MULTI on a foreign slot succeeded")
			}
			if got := wrapErr(ctx, "create", err); !errors.Is(got, ErrUnavailable) {
				return fmt.Errorf("a redirected transaction (%v) classified as %v, want ErrUnavailable", err, got)
			}
			redirected.Add(1)
			return nil
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if redirected.Load() == 0 {
		t.Fatal("no master redirected any of the keys")
	}
}
