package store

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/testutil"
)

// The contract tests run against three Redis deployments ("one suite, three
// backends"): a single redis-server, a Sentinel group (a master, a replica and
// three sentinels) and a Redis Cluster of 3 masters with a replica each. Each
// backend is started once per test binary, by the first test that needs it,
// and stopped by TestMain; tests share it, each under a key prefix of its own.

// backend is one shared Redis deployment.
type backend struct {
	name string
	// launch starts the deployment and returns a factory of clients for it.
	launch func() (newClient func() redis.UniversalClient, stop func(), err error)

	once      sync.Once
	newClient func() redis.UniversalClient
	stop      func()
	err       error
}

var (
	singleBackend = &backend{name: "single", launch: launchSingle}
	// The Sentinel group and the Cluster take about 3s each to start.
	sentinelBackend = &backend{name: "sentinel", launch: launchSentinel}
	clusterBackend  = &backend{name: "cluster", launch: launchCluster}
	backends        = []*backend{singleBackend, sentinelBackend, clusterBackend}
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, b := range backends {
		b.shutdown()
	}
	os.Exit(code)
}

// clientMaxRetries is the retry setting of every test client (which also
// honours deadlines): none, since a retry would hide a failure.
const clientMaxRetries = -1

func launchSingle() (func() redis.UniversalClient, func(), error) {
	srv, err := redistest.Launch()
	if err != nil {
		return nil, nil, err
	}
	return func() redis.UniversalClient {
		return redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true, MaxRetries: clientMaxRetries})
	}, srv.Stop, nil
}

func launchSentinel() (func() redis.UniversalClient, func(), error) {
	// No test here fails the master over: a longer down-after than
	// redistest's default keeps a busy machine from triggering a failover.
	g, stop, err := redistest.LaunchSentinelDownAfter(5 * time.Second)
	if err != nil {
		return nil, nil, err
	}
	return func() redis.UniversalClient {
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: redistest.SentinelMaster, SentinelAddrs: g.Addrs(),
			ContextTimeoutEnabled: true, MaxRetries: clientMaxRetries,
		})
	}, stop, nil
}

func launchCluster() (func() redis.UniversalClient, func(), error) {
	// No test here fails a node over: a longer node timeout than redistest's
	// default keeps a busy machine (-race, two cores) from triggering one.
	c, stop, err := redistest.LaunchCluster(3, 1, "--cluster-node-timeout", "5000")
	if err != nil {
		return nil, nil, err
	}
	return func() redis.UniversalClient {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true, MaxRetries: clientMaxRetries})
	}, stop, nil
}

// client returns a new client of the backend, started on first use, closed
// at the end of the test.
func (b *backend) client(t testing.TB) redis.UniversalClient {
	t.Helper()
	b.once.Do(func() { b.newClient, b.stop, b.err = b.launch() })
	if b.err != nil {
		t.Fatalf("starting the %s backend: %v", b.name, b.err)
	}
	c := b.newClient()
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (b *backend) shutdown() {
	if b.stop != nil {
		b.stop()
	}
}

// forEachBackend runs test as a parallel subtest per backend, each with a
// fixture of its own (cfg as in newFixture).
func forEachBackend(t *testing.T, cfg Config, test func(t *testing.T, f *fixture)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			test(t, newFixture(t, b, cfg))
		})
	}
}

type fixture struct {
	backend string
	srv     *redistest.Server // the private server of newPrivateFixture, else nil
	rdb     redis.UniversalClient
	store   *Store
	clock   *testutil.Clock
	cfg     Config
	prefix  string // the store's key prefix: every key of this fixture starts with it
}

var prefixSeq atomic.Int64

// newFixture returns a store on the shared backend b, under a key prefix of
// the test's own (unless cfg sets one). cfg.Clock, when nil, is an injected
// testutil.Clock.
func newFixture(t testing.TB, b *backend, cfg Config) *fixture {
	t.Helper()
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = testPrefix(t)
	}
	f := &fixture{backend: b.name, rdb: b.client(t), cfg: cfg, prefix: cfg.KeyPrefix}
	f.init(cfg)
	t.Cleanup(func() {
		if !t.Failed() { // keep a failed test's keys for inspection
			f.deleteKeys()
		}
	})
	return f
}

// newPrivateFixture starts a redis-server of the test's own and a store on
// it, for the tests that stop Redis or count the commands it serves.
func newPrivateFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	srv := redistest.Start(t)
	f := &fixture{backend: "private", srv: srv, rdb: srv.Client(t), cfg: cfg, prefix: cfg.KeyPrefix}
	if f.prefix == "" {
		f.prefix = "sessiond"
	}
	f.init(cfg)
	return f
}

func (f *fixture) init(cfg Config) {
	if cfg.Clock == nil {
		f.clock = testutil.NewClock()
		cfg.Clock = f.clock.Now
	}
	f.store = New(f.rdb, cfg)
}

// testPrefix is a key prefix unique in the test binary, made of the test's
// name: no braces (Cluster hash tags) and no glob characters (KEYS patterns).
func testPrefix(t testing.TB) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '.'
	}, t.Name())
	return fmt.Sprintf("t%d.%s", prefixSeq.Add(1), name)
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

// forEachMaster calls fn for every master: the one server of a single Redis
// or a Sentinel group, each master of a Cluster (concurrently).
func (f *fixture) forEachMaster(ctx context.Context, fn func(ctx context.Context, c *redis.Client) error) error {
	switch c := f.rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	}
	return fmt.Errorf("unexpected client %T", f.rdb)
}

// keys lists the fixture's keys that match glob after the prefix and its
// colon ("*" for all), on every master. Keys that Redis holds but that have
// expired by its clock are not listed.
func (f *fixture) keys(t testing.TB, glob string) []string {
	t.Helper()
	var mu sync.Mutex
	var keys []string
	err := f.forEachMaster(ctxT(t), func(ctx context.Context, c *redis.Client) error {
		ks, err := c.Keys(ctx, f.prefix+":"+glob).Result()
		mu.Lock()
		keys = append(keys, ks...)
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatalf("listing keys: %v", err)
	}
	return keys
}

// deleteKeys removes the fixture's keys, best effort, so that a shared
// backend does not fill up.
func (f *fixture) deleteKeys() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = f.forEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		ks, err := c.Keys(ctx, f.prefix+":*").Result()
		for _, k := range ks { // one by one: a Cluster node refuses a multi-slot DEL
			c.Del(ctx, k)
		}
		return err
	})
}

// checkConsistent asserts the store's invariants over every key of the
// fixture's prefix: every live index member has its session key, with the
// member's score as the key's expiry and the index's user as owner; every
// session key is a live member of its user's index; every index expires with
// its latest member.
func (f *fixture) checkConsistent(t testing.TB) {
	t.Helper()
	ctx := ctxT(t)
	keys := f.keys(t, "*")
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
// commandstats, summed over the masters. Only a private server's counts are
// the fixture's own: other tests share the other backends.
func (f *fixture) commandCalls(t testing.TB) map[string]int {
	t.Helper()
	var mu sync.Mutex
	calls := map[string]int{}
	err := f.forEachMaster(ctxT(t), func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "commandstats").Result()
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for _, line := range strings.Split(info, "\n") {
			name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
			if !ok {
				continue
			}
			n, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
			calls[strings.TrimPrefix(name, "cmdstat_")] += n
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
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

// revoked is a revocation's outcome as "did it revoke anything".
func revoked(r *Revocation, err error) (bool, error) { return r != nil, err }

// revokedCount is a RevokeUser's outcome as the number of sessions revoked.
func revokedCount(r *Revocation, err error) (int, error) {
	if r == nil {
		return 0, err
	}
	return len(r.SessionIDs), err
}
