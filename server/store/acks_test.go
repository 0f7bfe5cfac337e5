package store

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/redistest"
)

// TestMinReplicaAcks: with MinReplicaAcks 1, writes wait for a replica (on
// a Cluster, of the master that took each write): on the Sentinel group and
// the Cluster, whose masters have one each, they succeed and Ping does; on
// the single Redis, which has none, every write is applied by the master
// and answered ErrNotReplicated (and ErrUnavailable) after the ack timeout,
// and Ping fails: the store is not ready for writes.
func TestMinReplicaAcks(t *testing.T) {
	t.Parallel()
	// Long enough for a replica's acknowledgement on a loaded machine (a
	// Cluster just started may still be settling its replicas).
	const timeout = time.Second
	forEachBackend(t, Config{MinReplicaAcks: 1, ReplicaAckTimeout: timeout}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		if f.backend != "single" {
			waitFor(t, "the replicas online", func() bool { return f.store.Ping(ctx) == nil })
		}
		start := time.Now()
		c, err := f.store.Create(ctx, NewSession{UserID: "acked", TTL: time.Hour})
		took := time.Since(start)
		pingErr := f.store.Ping(ctx)
		if f.backend == "single" {
			if !errors.Is(err, ErrNotReplicated) || !errors.Is(err, ErrUnavailable) || took < timeout {
				t.Fatalf("Create without a replica = %v after %v; want ErrNotReplicated (and ErrUnavailable) after the %v timeout", err, took, timeout)
			}
			if !errors.Is(pingErr, ErrNotReplicated) {
				t.Fatalf("Ping without a replica = %v, want ErrNotReplicated", pingErr)
			}
			// Applied all the same: the master has it.
			if ks := f.keys(t, "*:s:*"); len(ks) != 1 {
				t.Fatalf("session keys after an unreplicated create: %v, want the one it applied", ks)
			}
			return
		}
		if err != nil || pingErr != nil {
			t.Fatalf("with a replica per master: Create = %v, Ping = %v", err, pingErr)
		}
		for _, write := range []func() error{
			func() error { _, err := f.store.Rotate(ctx, c.Token, Step{}); return err },
			func() error { _, err := f.store.RevokeUser(ctx, "acked", ""); return err },
			func() error { _, _, err := f.store.RevokeAll(ctx, f.store.now()); return err },
		} {
			if err := write(); err != nil {
				t.Fatalf("a write with a replica to acknowledge it: %v", err)
			}
		}
		f.checkConsistent(t)
	})
}

// BenchmarkWriteAcks measures what --min-replica-acks costs a write: a
// create and its revocation (two transactions), on a master with one
// replica (both local), without acks and waiting for one. Run it with
// -count to alternate the two:
//
//	go test -run '^$' -bench WriteAcks -count 5 -cpu 16 ./server/store
func BenchmarkWriteAcks(b *testing.B) {
	master := redistest.Start(b, "--repl-diskless-sync-delay", "0")
	replica := redistest.Start(b, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port()))
	for replica.Info(b, "replication", "master_link_status") != "up" {
		time.Sleep(20 * time.Millisecond)
	}
	for _, acks := range []int{0, 1} {
		b.Run("acks="+strconv.Itoa(acks), func(b *testing.B) {
			st := New(benchClient(b, master, 64), Config{KeyPrefix: "bench-acks", MinReplicaAcks: acks})
			ctx := context.Background()
			var n atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c, err := st.Create(ctx, NewSession{UserID: "u" + strconv.FormatInt(n.Add(1), 10), TTL: time.Hour})
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := st.RevokeToken(ctx, c.Token); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// waitFor polls ok until it holds, for at most 10s.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
