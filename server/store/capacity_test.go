package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/sessiond/sessiond/internal/redistest"
)

// The shape of a session in the capacity figures (docs/deployment.md, "Capacity"): a
// UUID user id, a 20-byte email, an IPv4 client address, a 40-byte user
// agent, no attributes, an idle timeout; the default key prefix.
const capacityUserAgent = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20" // 40 bytes

func capacitySession(userID string) NewSession {
	return NewSession{
		UserID: userID, Email: "ada.lovelace@exa.com", ClientIP: "203.0.113.7", UserAgent: capacityUserAgent,
		TTL: 24 * time.Hour, IdleTimeout: time.Hour,
	}
}

// TestCapacityBytesPerSession measures what a session costs in Redis, and
// logs it (go test -v -run TestCapacityBytesPerSession ./server/store):
//   - MEMORY USAGE of a session key, plus its share of its user's index
//     (MEMORY USAGE of the index over its members) for users with 1, 5 and
//     50 sessions;
//   - the growth of used_memory per session over 3,000 sessions (with 1, 5
//     and 50 per user; client buffers excluded), which also counts what
//     MEMORY USAGE leaves out (the expiry entry, the hash tables' buckets).
//
// It fails when a session grows past a bound, so that the figures in
// docs/deployment.md stay true.
func TestCapacityBytesPerSession(t *testing.T) {
	t.Parallel()
	if len(capacityUserAgent) != 40 || len(capacitySession("").Email) != 20 {
		t.Fatal("the measured shape changed: update the Capacity section of docs/deployment.md")
	}
	f := newPrivateFixture(t, Config{Clock: time.Now}) // default prefix, real clock
	ctx := ctxT(t)

	var sessionKey int64
	for _, n := range []int{1, 5, 50} {
		user := uuid.NewString()
		var last *Created
		for range n {
			c, err := f.store.Create(ctx, capacitySession(user))
			if err != nil {
				t.Fatal(err)
			}
			last = c
		}
		id, _ := parseSessionID(last.Session.ID)
		sk := f.store.sessionKey(id.tag, id.uuid.String())
		ik := f.store.indexKey(id.tag, user)
		s := f.rdb.MemoryUsage(ctx, sk, 0).Val()
		i := f.rdb.MemoryUsage(ctx, ik, 0).Val()
		if s == 0 || i == 0 {
			t.Fatalf("MEMORY USAGE of %s or %s is 0", sk, ik)
		}
		sessionKey = s
		share := float64(i) / float64(n)
		t.Logf("user with %2d sessions: session key %d B (%s), index %d B (%s) = %.0f B/session; total %.0f B/session",
			n, s, f.rdb.ObjectEncoding(ctx, sk).Val(), i, f.rdb.ObjectEncoding(ctx, ik).Val(), share, float64(s)+share)
	}
	// A user agent over hash-max-listpack-value (64 bytes) turns the session's
	// hash from a listpack into a hash table.
	long := capacitySession(uuid.NewString())
	long.UserAgent = strings.Repeat(capacityUserAgent, 3)
	c, err := f.store.Create(ctx, long)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := parseSessionID(c.Session.ID)
	sk := f.store.sessionKey(id.tag, id.uuid.String())
	t.Logf("with a %d-byte user agent: session key %d B (%s)", len(long.UserAgent), f.rdb.MemoryUsage(ctx, sk, 0).Val(), f.rdb.ObjectEncoding(ctx, sk).Val())
	if sessionKey > 400 {
		t.Errorf("a session key takes %d B, over the 400 B deployment.md's capacity figures allow for", sessionKey)
	}

	// The bounds leave about 20% over the figures in deployment.md (Capacity).
	for perUser, bound := range map[int]float64{1: 780, 5: 590, 50: 550} {
		perSession := usedMemoryPerSession(t, capacitySessions/perUser, perUser)
		t.Logf("used_memory grows by %.0f B per session over %d sessions, %d per user", perSession, capacitySessions, perUser)
		if perSession > bound {
			t.Errorf("%.0f B of used_memory per session with %d per user, over the %.0f B deployment.md's capacity figures allow for", perSession, perUser, bound)
		}
	}
}

// TestCapacityBytesPerRotation measures what a rotation leaves behind: the
// marker of the rotated-away token (reuse.go), and the successor's field
// naming its predecessor; and logs it (go test -v -run
// TestCapacityBytesPerRotation ./server/store):
//   - MEMORY USAGE of a marker key: the first rotation's, and one further
//     down a chain (it names its own predecessor too), and of a rotated
//     session key;
//   - the growth of used_memory per rotation over 3,000 sessions (one per
//     user) rotated once, then once more.
//
// A marker lives as long as its successor can (its absolute expiry), so a
// session rotated n times carries n markers until it ends. It fails when a
// rotation costs more than a bound, ~20% over the figures measured.
func TestCapacityBytesPerRotation(t *testing.T) {
	t.Parallel()
	f := newPrivateFixture(t, Config{Clock: time.Now}) // default prefix, real clock
	ctx := ctxT(t)
	c, err := f.store.Create(ctx, capacitySession(uuid.NewString()))
	if err != nil {
		t.Fatal(err)
	}
	sessionBefore := f.rdb.MemoryUsage(ctx, f.sessionKeyOf(t, c.Session.ID), 0).Val()
	first, err := f.store.Rotate(ctx, c.Token, Step{})
	if err != nil {
		t.Fatal(err)
	}
	second, err := f.store.Rotate(ctx, first.Token, Step{})
	if err != nil {
		t.Fatal(err)
	}
	firstMarker := f.rdb.MemoryUsage(ctx, f.markerKeyOf(t, c.Session.ID), 0).Val()
	chainMarker := f.rdb.MemoryUsage(ctx, f.markerKeyOf(t, first.Session.ID), 0).Val()
	rotated := f.rdb.MemoryUsage(ctx, f.sessionKeyOf(t, second.Session.ID), 0).Val()
	if firstMarker == 0 || chainMarker == 0 || rotated == 0 {
		t.Fatal("MEMORY USAGE of a marker or a rotated session is 0")
	}
	t.Logf("marker key: %d B (first rotation), %d B (down a chain) (%s); session key %d B, rotated %d B",
		firstMarker, chainMarker, f.rdb.ObjectEncoding(ctx, f.markerKeyOf(t, c.Session.ID)).Val(), sessionBefore, rotated)
	// Measured (Redis 7.0): 232 B, 280 B; a rotated session 440 B (344 B
	// before it: the field naming its predecessor, rounded up to the
	// allocator's next size class).
	if chainMarker > 370 {
		t.Errorf("a marker key takes %d B, over the 370 B bound", chainMarker)
	}
	if rotated > 530 {
		t.Errorf("a rotated session key takes %d B, over the 530 B bound", rotated)
	}

	once, twice := usedMemoryPerRotation(t, capacitySessions)
	t.Logf("used_memory grows by %.0f B per rotation (first rotation of each session), %.0f B (second), over %d sessions",
		once, twice, capacitySessions)
	// Measured (Redis 7.0): 447-461 B, then 320-334 B.
	for _, r := range []struct {
		what         string
		got, maxSize float64
	}{{"first", once, 610}, {"second", twice, 420}} {
		if r.got > r.maxSize {
			t.Errorf("%.0f B of used_memory per %s rotation, over the %.0f B bound", r.got, r.what, r.maxSize)
		}
	}
}

// usedMemoryPerRotation creates n sessions (one per user) on a redis-server
// of its own, rotates each once and then once more, and returns how much its
// used_memory grew per rotation each time.
func usedMemoryPerRotation(t *testing.T, n int) (first, second float64) {
	t.Helper()
	f := newPrivateFixture(t, Config{Clock: time.Now})
	ctx := ctxT(t)
	tokens := make([]string, n)
	each := func(fn func(i int) error) {
		t.Helper()
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for range 16 {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
					if err := fn(int(i)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	rotateAll := func() {
		each(func(i int) error {
			r, err := f.store.Rotate(ctx, tokens[i], Step{})
			if err == nil {
				tokens[i] = r.Token
			}
			return err
		})
	}
	each(func(i int) error {
		c, err := f.store.Create(ctx, capacitySession(uuid.NewString()))
		if err == nil {
			tokens[i] = c.Token
		}
		return err
	})
	before := settledUsedMemory(t, f.rdb)
	rotateAll()
	mid := settledUsedMemory(t, f.rdb)
	rotateAll()
	after := settledUsedMemory(t, f.rdb)
	return float64(mid-before) / float64(n), float64(after-mid) / float64(n)
}

// settledUsedMemory is usedMemory once Redis has finished growing its hash
// tables (it rehashes incrementally, holding both tables meanwhile, for up
// to a few of its 100ms cron runs): two equal readings 150ms apart, at most
// 2s.
func settledUsedMemory(t *testing.T, rdb redis.UniversalClient) int64 {
	t.Helper()
	last := usedMemory(t, rdb)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		time.Sleep(150 * time.Millisecond)
		m := usedMemory(t, rdb)
		if m == last {
			break
		}
		last = m
	}
	return last
}

// usedMemoryPerSession creates users*perUser sessions on a redis-server of
// its own and returns how much its used_memory grew per session.
// capacitySessions is how many sessions usedMemoryPerSession creates.
const capacitySessions = 3000

func usedMemoryPerSession(t *testing.T, users, perUser int) float64 {
	t.Helper()
	f := newPrivateFixture(t, Config{Clock: time.Now})
	ctx := ctxT(t)
	createUsers := func(users int) {
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, capacityCallers)
		for range capacityCallers {
			wg.Go(func() {
				for i := next.Add(1); i <= int64(users); i = next.Add(1) {
					user := uuid.NewString()
					for range perUser {
						if _, err := f.store.Create(ctx, capacitySession(user)); err != nil {
							errs <- err
							return
						}
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	// First open the callers' connections: each costs Redis about 25 KiB
	// that mem_clients_normal does not count (a client's fixed reply buffer
	// and structures), which would add ~140 B to each of 3000 sessions.
	createUsers(capacityCallers)
	before := settledUsedMemory(t, f.rdb)
	createUsers(users)
	return float64(settledUsedMemory(t, f.rdb)-before) / float64(users*perUser)
}

// capacityCallers is how many callers usedMemoryPerSession creates with.
const capacityCallers = 16

// usedMemory is used_memory less what the connected clients take (their
// buffers), which is not the sessions'.
func usedMemory(t testing.TB, rdb redis.UniversalClient) int64 {
	t.Helper()
	info, err := rdb.Info(ctxT(t), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]int64{}
	for line := range strings.SplitSeq(info, "\n") {
		name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if n, err := strconv.ParseInt(v, 10, 64); ok && err == nil {
			fields[name] = n
		}
	}
	used, ok1 := fields["used_memory"]
	clients, ok2 := fields["mem_clients_normal"]
	if !ok1 || !ok2 {
		t.Fatalf("no used_memory or mem_clients_normal in INFO memory:\n%s", info)
	}
	return used - clients
}

// The throughput of one Redis shard, measured with the store's own calls:
//
//	go test -run '^$' -bench . -benchtime 3s ./server/store
//
// Each benchmark starts a redis-server of its own; the load generator and
// Redis share the machine. goroutines=N runs N concurrent callers (over one
// client with a pool of N connections); ops/s is the figure to read.

func BenchmarkGet(b *testing.B) {
	srv := redistest.Start(b)
	ctx := context.Background()
	// 10,000 live sessions of 2,000 users, validated at random.
	st := New(srv.Client(b), Config{})
	tokens := make([]string, 10_000)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(tokens)); i = next.Add(1) - 1 {
				c, err := st.Create(ctx, capacitySession(fmt.Sprintf("bench-user-%d", i%2000)))
				if err != nil {
					b.Error(err)
					return
				}
				tokens[i] = c.Token
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	for _, g := range []int{16, 64} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			st := New(benchClient(b, srv, g), Config{})
			b.SetParallelism(max(1, g/runtime.GOMAXPROCS(0)))
			var seed atomic.Uint64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := rand.New(rand.NewPCG(seed.Add(1), 1))
				for pb.Next() {
					if _, err := st.Get(ctx, tokens[r.IntN(len(tokens))]); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

func BenchmarkCreate(b *testing.B) {
	srv := redistest.Start(b)
	ctx := context.Background()
	for _, g := range []int{16, 64} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			// The default cap of sessiond; users spread so that writers rarely
			// contend for one user's index, as in real traffic.
			st := New(benchClient(b, srv, g), Config{MaxSessionsPerUser: 100, KeyPrefix: fmt.Sprintf("bench%d", g)})
			b.SetParallelism(max(1, g/runtime.GOMAXPROCS(0)))
			var seq atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					user := fmt.Sprintf("bench-user-%d", seq.Add(1)%100_000)
					if _, err := st.Create(ctx, capacitySession(user)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

func benchClient(b *testing.B, srv *redistest.Server, poolSize int) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: poolSize, ContextTimeoutEnabled: true, MaxRetries: -1})
	b.Cleanup(func() { _ = c.Close() })
	return c
}
