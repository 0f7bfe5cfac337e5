package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestClusterMixedOperations runs up to 10,000 mixed operations (create,
// get, touch, revoke by token and by id, revoke-user, list) for many users at
// once on the Redis Cluster, for at most 25s, and at least 2,000 of them. None
// may fail: a CROSSSLOT error would mean a transaction or a multi-key command
// whose keys span slots. Then the keys must be consistent, and spread over
// every master.
func TestClusterMixedOperations(t *testing.T) {
	t.Parallel()
	const total, atLeast, workers, users = 10_000, 2_000, 16, 500
	f := newFixture(t, clusterBackend, Config{MaxSessionsPerUser: 10, TouchInterval: time.Minute})
	// The workers stop by themselves after runFor, done or not (a loaded
	// machine does fewer operations, not wrong ones); ctx is only a guard
	// against a hung operation.
	const runFor = 25 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	var mu sync.Mutex
	byUser := map[string][]*Created{} // sessions created, revoked or not
	pick := func(r *rand.Rand, user string) *Created {
		mu.Lock()
		defer mu.Unlock()
		cs := byUser[user]
		if len(cs) == 0 {
			return nil
		}
		return cs[r.IntN(len(cs))]
	}
	ops := []string{"create", "get", "touch", "revoke token", "revoke id", "revoke user", "list"}
	// Weights out of 20: 30% creates, 25% gets, 10% each for the others but
	// revoke-user (5%).
	weights := []int{6, 5, 2, 2, 2, 1, 2}
	var counts [7]atomic.Int64
	var done, crossSlot atomic.Int64
	var errMu sync.Mutex
	var errs []error

	var wg sync.WaitGroup
	var next atomic.Int64
	start := time.Now()
	stopAt := start.Add(runFor)
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 42))
			for time.Now().Before(stopAt) && next.Add(1) <= total && ctx.Err() == nil {
				user := fmt.Sprintf("mixed-user-%d", r.IntN(users))
				op, x := 0, r.IntN(20)
				for x >= weights[op] {
					x -= weights[op]
					op++
				}
				err := mixedOp(ctx, f, r, ops[op], user, pick, func(c *Created) {
					mu.Lock()
					byUser[user] = append(byUser[user], c)
					mu.Unlock()
				})
				counts[op].Add(1)
				done.Add(1)
				if err != nil {
					if errors.Is(err, redis.ErrCrossSlot) || strings.Contains(err.Error(), "CROSSSLOT") {
						crossSlot.Add(1)
					}
					errMu.Lock()
					errs = append(errs, fmt.Errorf("%s for %s: %w", ops[op], user, err))
					errMu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var summary []string
	for i, op := range ops {
		summary = append(summary, fmt.Sprintf("%s %d", op, counts[i].Load()))
	}
	t.Logf("%d operations in %v (%.0f/s): %s", done.Load(), elapsed.Round(time.Millisecond),
		float64(done.Load())/elapsed.Seconds(), strings.Join(summary, ", "))
	if n := crossSlot.Load(); n != 0 {
		t.Errorf("%d CROSSSLOT errors", n)
	}
	for i, err := range errs {
		if i == 10 {
			t.Errorf("... and %d more errors", len(errs)-10)
			break
		}
		t.Error(err)
	}
	if err := ctx.Err(); err != nil {
		t.Fatalf("the operations did not end within the guard's 40s: %v", err)
	}
	if n := done.Load(); n < atLeast {
		t.Fatalf("only %d operations in %v, want at least %d", n, runFor, atLeast)
	}
	f.checkConsistent(t)

	// The users' keys are spread over every master.
	var perMaster []int
	var pmu sync.Mutex
	if err := f.forEachMaster(ctxT(t), func(ctx context.Context, c *redis.Client) error {
		ks, err := c.Keys(ctx, f.prefix+":*").Result()
		pmu.Lock()
		perMaster = append(perMaster, len(ks))
		pmu.Unlock()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("keys per master: %v", perMaster)
	if len(perMaster) != 3 || min(perMaster[0], perMaster[1], perMaster[2]) == 0 {
		t.Fatalf("keys per master %v, want some on each of 3", perMaster)
	}
}

// mixedOp runs one operation of TestClusterMixedOperations. Outcomes that
// the contract allows (a revoked session that no longer validates, a revoke
// of a session already gone) are not errors.
func mixedOp(ctx context.Context, f *fixture, r *rand.Rand, op, user string, pick func(*rand.Rand, string) *Created, created func(*Created)) error {
	switch op {
	case "create":
		c, err := f.store.Create(ctx, NewSession{
			UserID: user, Email: user + "@example.com", UserAgent: "mixed/1.0",
			TTL: time.Hour, IdleTimeout: 30 * time.Minute,
		})
		if err == nil {
			created(c)
		}
		return err
	case "list":
		sessions, next, err := f.store.ListUser(ctx, user, 4, "")
		if err == nil && next != "" {
			sessions, _, err = f.store.ListUser(ctx, user, 4, next)
		}
		for _, s := range sessions {
			if s.UserID != user {
				return fmt.Errorf("listed a session of %s", s.UserID)
			}
		}
		return err
	case "revoke user":
		except := ""
		if c := pick(r, user); c != nil && r.IntN(2) == 0 {
			except = c.Session.ID
		}
		_, err := f.store.RevokeUser(ctx, user, except)
		return err
	}
	c := pick(r, user)
	if c == nil {
		return nil
	}
	switch op {
	case "get", "touch":
		s, err := f.store.Get(ctx, c.Token)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil || op == "get" {
			return err
		}
		f.clock.Advance(time.Second)
		_, err = f.store.Touch(ctx, s)
		return err
	case "revoke token":
		_, err := f.store.RevokeToken(ctx, c.Token)
		return err
	case "revoke id":
		_, err := f.store.Revoke(ctx, c.Session.ID)
		return err
	}
	return fmt.Errorf("unknown operation %q", op)
}
