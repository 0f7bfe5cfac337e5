package store

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/testutil"
)

type fixture struct {
	srv   *redistest.Server
	rdb   *redis.Client
	store *Store
	clock *testutil.Clock
	cfg   Config
}

// newFixture starts a redis-server of the test's own and a store on it.
// cfg.Clock, when nil, is an injected testClock.
func newFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	srv := redistest.Start(t)
	f := &fixture{srv: srv, rdb: srv.Client(t), cfg: cfg}
	if cfg.Clock == nil {
		f.clock = testutil.NewClock()
		cfg.Clock = f.clock.Now
	}
	f.store = New(f.rdb, cfg)
	return f
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (f *fixture) create(t testing.TB, userID string, ttl, idle time.Duration) *Created {
	t.Helper()
	c, err := f.store.Create(ctxT(t), NewSession{UserID: userID, TTL: ttl, IdleTimeout: idle, UserAgent: "test-agent/1.0"})
	if err != nil {
		t.Fatalf("Create(%s): %v", userID, err)
	}
	return c
}

// checkConsistent asserts the store's invariants over every key in Redis:
// every live index member has its session key, with the member's score as
// the key's expiry and the index's user as owner; every session key is a
// live member of its user's index; every index expires with its latest member.
func (f *fixture) checkConsistent(t testing.TB) {
	t.Helper()
	ctx := ctxT(t)
	keys, err := f.rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	now := f.store.now().UnixMilli()
	members := map[string]float64{} // session key -> score in its index
	for _, k := range keys {
		if !strings.Contains(k, "}:u:") {
			continue
		}
		zs, err := f.rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		base, userID, _ := strings.Cut(k, "}:u:")
		var maxScore float64
		for _, z := range zs {
			sk := base + "}:s:" + z.Member.(string)
			members[sk] = z.Score
			maxScore = max(maxScore, z.Score)
			if int64(z.Score) <= now {
				continue // ended, to be pruned by the next write
			}
			owner, err := f.rdb.HGet(ctx, sk, fieldUserID).Result()
			if err != nil {
				t.Errorf("index %s lists %s, whose session key is missing (%v)", k, z.Member, err)
				continue
			}
			if owner != userID {
				t.Errorf("session %s is owned by %q but listed in %q's index", sk, owner, userID)
			}
			if exp := f.rdb.PExpireTime(ctx, sk).Val(); exp.Milliseconds() != int64(z.Score) {
				t.Errorf("session %s expires at %d, its index score is %d", sk, exp.Milliseconds(), int64(z.Score))
			}
		}
		if exp := f.rdb.PExpireTime(ctx, k).Val(); exp.Milliseconds() != int64(maxScore) {
			t.Errorf("index %s expires at %d, want its latest member's end %d", k, exp.Milliseconds(), int64(maxScore))
		}
	}
	for _, k := range keys {
		if !strings.Contains(k, "}:s:") {
			continue
		}
		if f.rdb.PExpireTime(ctx, k).Val().Milliseconds() <= now {
			continue // ended by the injected clock; Redis' own clock has not caught up
		}
		score, ok := members[k]
		if !ok || int64(score) <= now {
			t.Errorf("session key %s is not a live member of its user's index", k)
		}
	}
}

// commandCalls reads the number of calls of each command from INFO
// commandstats of the fixture's own server.
func (f *fixture) commandCalls(t testing.TB) map[string]int {
	t.Helper()
	info, err := f.rdb.Info(ctxT(t), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
		calls[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return calls
}

func diffCalls(before, after map[string]int) map[string]int {
	d := map[string]int{}
	for k, v := range after {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	delete(d, "info")
	return d
}
