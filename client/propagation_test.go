package client_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/client"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/testutil"
)

// TestRevocationReachesEveryCachingInterceptor runs two real sessiond
// processes on one real Redis and four caching interceptors (two on each).
// Each round creates a session, warms every cache (checking that a warm
// interceptor makes no call to sessiond), revokes the session through one
// sessiond, and measures how long each interceptor keeps accepting the
// token after RevokeSession has returned.
func TestRevocationReachesEveryCachingInterceptor(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	t.Parallel()
	redisSrv := redistest.Start(t)
	bin := testutil.BuildSessiond(t)
	a := testutil.StartSessiond(t, bin, "--redis-url="+redisSrv.URL())
	b := testutil.StartSessiond(t, bin, "--redis-url="+redisSrv.URL())

	type guard struct {
		c     *client.Client
		icpt  func(token string) error
		calls func() int64
	}
	var guards []guard
	for i, addr := range []string{a.Addr, a.Addr, b.Addr, b.Addr} {
		conn, calls := countingConn(t, addr)
		c := client.New(conn, client.WithCache(1000, time.Minute))
		t.Cleanup(func() { _ = c.Close() })
		icpt := client.UnaryServerInterceptor(c)
		guards = append(guards, guard{c: c, calls: calls.Load, icpt: func(token string) error {
			_, _, err := call(ctxT(t), icpt, fmt.Sprintf("/app.v1.App/Get%d", i), metadata.Pairs("authorization", "Bearer "+token))
			return err
		}})
		waitFor(t, "the cache to go live", func() bool { return c.CacheStats().Live })
	}
	conn, _ := countingConn(t, a.Addr)
	issuer := client.New(conn)

	const rounds = 30
	var mu sync.Mutex
	var lags []time.Duration
	for r := range rounds {
		token, _, err := issuer.Create(ctxT(t), client.NewSession{UserID: fmt.Sprint("user-", r%3)})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range guards {
			if err := g.icpt(token); err != nil { // miss: asks sessiond
				t.Fatal(err)
			}
			before := g.calls()
			for range 20 {
				if err := g.icpt(token); err != nil {
					t.Fatal(err)
				}
			}
			if n := g.calls() - before; n != 0 {
				t.Fatalf("a warm caching interceptor made %d calls to sessiond", n)
			}
		}
		if _, err := issuer.Revoke(ctxT(t), token); err != nil {
			t.Fatal(err)
		}
		revoked := time.Now()
		var wg sync.WaitGroup
		for _, g := range guards {
			wg.Go(func() {
				for {
					err := g.icpt(token)
					if status.Code(err) == codes.Unauthenticated {
						mu.Lock()
						lags = append(lags, time.Since(revoked))
						mu.Unlock()
						return
					}
					if err != nil {
						t.Errorf("while waiting for the revocation: %v", err)
						return
					}
					// The lag is measured and logged (p50, p99); only a
					// revocation that never arrives fails the test.
					if time.Since(revoked) > 10*time.Second {
						t.Errorf("a revoked token still passes an interceptor 10s after RevokeSession returned")
						return
					}
					time.Sleep(200 * time.Microsecond)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
	}
	slices.Sort(lags)
	pct := func(p float64) time.Duration { return lags[min(len(lags)-1, int(p*float64(len(lags))))] }
	t.Logf("revocation to rejection over %d interceptor-rounds (2 sessiond processes, 4 caching interceptors): p50 %v, p99 %v, max %v (target: within 100ms)",
		len(lags), pct(0.50), pct(0.99), lags[len(lags)-1])
}

// stalenessBound is how long after UpdateSession (or RevokeAllSessions)
// returns a caching client may still serve what the call changed.
const stalenessBound = 100 * time.Millisecond

// TestUpdatesAndCutoffReachEveryCachingClient runs two real sessiond
// processes on one real Redis and a caching client on each. Each round
// creates a session, warms both caches (a warm validation makes no call),
// changes its attributes through one sessiond (UpdateByID or Update, in
// turn, through each sessiond in turn), and polls both clients until they
// serve the new attributes: no answer with the old ones may come from a call
// made more than stalenessBound after the update returned. Then a
// RevokeAllSessions cutoff: both clients stop serving the sessions created
// before it within the bound and keep serving (from the cache) those created
// at or after it; the streams of the former end, those of the latter go on,
// and an update before it ended none.
//
// It asserts a latency bound, so it does not run in parallel with the
// package's other tests (it runs before them): what it measures is the
// client's and sessiond's delay, not the scheduling of the other tests'
// goroutines in this process.
func TestUpdatesAndCutoffReachEveryCachingClient(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	redisSrv := redistest.Start(t) // a Redis of its own: the cutoff is global
	bin := testutil.BuildSessiond(t)
	procs := []*testutil.Process{
		testutil.StartSessiond(t, bin, "--redis-url="+redisSrv.URL()),
		testutil.StartSessiond(t, bin, "--redis-url="+redisSrv.URL()),
	}
	type cachingClient struct {
		c     *client.Client
		calls func() int64
		on    int // the sessiond it talks to
	}
	var (
		cached  []cachingClient
		writers []*client.Client
	)
	for i, p := range procs {
		conn, calls := countingConn(t, p.Addr)
		c := client.New(conn, client.WithCache(1000, time.Minute))
		t.Cleanup(func() { _ = c.Close() })
		cached = append(cached, cachingClient{c: c, calls: calls.Load, on: i})
		wconn, _ := countingConn(t, p.Addr)
		writers = append(writers, client.New(wconn))
	}
	for _, cc := range cached {
		waitFor(t, "the cache to go live", func() bool { return cc.c.CacheStats().Live })
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	warm := func(token string) {
		t.Helper()
		for _, cc := range cached {
			if _, err := cc.c.Validate(ctx, token); err != nil { // a miss: asks sessiond
				t.Fatal(err)
			}
			before := cc.calls()
			if _, err := cc.c.Validate(ctx, token); err != nil {
				t.Fatal(err)
			}
			if n := cc.calls() - before; n != 0 {
				t.Fatalf("a warm caching client made %d calls to sessiond", n)
			}
		}
	}

	// Updates.
	const rounds = 30
	var (
		mu                sync.Mutex
		fresh, crossFresh []time.Duration // from the update's return to the first call that served the new attributes
		stale             []time.Duration // from the update's return to a call served the old attributes
	)
	for r := range rounds {
		via := r % 2
		token, s, err := writers[via].Create(ctx, client.NewSession{UserID: fmt.Sprint("user-", r%3), Attributes: map[string]string{"v": "old"}})
		if err != nil {
			t.Fatal(err)
		}
		warm(token)
		want := fmt.Sprint("round-", r)
		change := client.AttributeChange{Set: map[string]string{"v": want}}
		if r%4 < 2 {
			_, err = writers[via].UpdateByID(ctx, s.GetSessionId(), change)
		} else {
			_, err = writers[via].Update(ctx, token, change)
		}
		if err != nil {
			t.Fatal(err)
		}
		updated := time.Now()
		var wg sync.WaitGroup
		for _, cc := range cached {
			wg.Go(func() {
				for {
					start := time.Now()
					got, err := cc.c.Validate(ctx, token)
					if err != nil {
						t.Errorf("while waiting for the update: %v", err)
						return
					}
					if got.GetAttributes()["v"] == want {
						mu.Lock()
						fresh = append(fresh, max(0, start.Sub(updated)))
						if cc.on != via {
							crossFresh = append(crossFresh, max(0, start.Sub(updated)))
						}
						mu.Unlock()
						return
					}
					if lag := start.Sub(updated); lag > 0 {
						mu.Lock()
						stale = append(stale, lag)
						mu.Unlock()
						if lag > stalenessBound {
							t.Errorf("a caching client served the old attributes %v after UpdateSession returned (bound %v)", lag, stalenessBound)
							return
						}
					}
					time.Sleep(200 * time.Microsecond)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
	}
	slices.Sort(stale)
	t.Logf("update to the new attributes over %d client-rounds (2 sessiond processes, 2 caching clients): %s; through the other sessiond: %s; %d stale answers after the update returned, the latest %v after (bound %v)",
		len(fresh), percentiles(fresh), percentiles(crossFresh), len(stale), last(stale), stalenessBound)

	// The cutoff, and streams: two sessions created in different
	// milliseconds, streams of each through each caching client.
	oldToken, oldS, err := writers[0].Create(ctx, client.NewSession{UserID: "before"})
	if err != nil {
		t.Fatal(err)
	}
	newToken, newS := createAfter(t, writers[0], "after", oldS.GetCreatedAt().AsTime())
	warm(oldToken)
	warm(newToken)
	type stream struct {
		ended <-chan error
		ticks func() int64
	}
	var oldStreams, newStreams []stream
	for _, cc := range cached {
		shop, _ := serveOrders(t, grpc.ChainStreamInterceptor(client.StreamServerInterceptor(cc.c)))
		ended, ticks := openStream(t, shop, oldToken)
		oldStreams = append(oldStreams, stream{ended, ticks})
		ended, ticks = openStream(t, shop, newToken)
		newStreams = append(newStreams, stream{ended, ticks})
	}
	// An update ends no stream: once both clients serve it, every stream
	// still ticks.
	if _, err := writers[1].UpdateByID(ctx, oldS.GetSessionId(), client.AttributeChange{Set: map[string]string{"v": "updated"}}); err != nil {
		t.Fatal(err)
	}
	for _, cc := range cached {
		waitFor(t, "the update to reach the cache", func() bool {
			s, err := cc.c.Validate(ctx, oldToken)
			return err == nil && s.GetAttributes()["v"] == "updated"
		})
	}
	for _, st := range append(slices.Clone(oldStreams), newStreams...) {
		waitTicks(t, "a stream after an update of its session", st.ended, st.ticks, 2)
	}
	warm(oldToken)

	cutoff := newS.GetCreatedAt().AsTime() // whole milliseconds: oldS is before it, newS is not
	if inForce, err := writers[1].RevokeAll(ctx, cutoff); err != nil || !inForce.Equal(cutoff) {
		t.Fatalf("RevokeAll(%v) = %v, %v", cutoff, inForce, err)
	}
	revoked := time.Now()
	var cutLags []time.Duration
	var wg sync.WaitGroup
	for _, cc := range cached {
		wg.Go(func() {
			for {
				start := time.Now()
				_, err := cc.c.Validate(ctx, oldToken)
				if status.Code(err) == codes.Unauthenticated {
					mu.Lock()
					cutLags = append(cutLags, max(0, start.Sub(revoked)))
					mu.Unlock()
					return
				}
				if err != nil {
					t.Errorf("while waiting for the cutoff: %v", err)
					return
				}
				if lag := start.Sub(revoked); lag > stalenessBound {
					t.Errorf("a caching client served a session created before the cutoff %v after RevokeAllSessions returned (bound %v)", lag, stalenessBound)
					return
				}
				time.Sleep(200 * time.Microsecond)
			}
		})
	}
	wg.Wait()
	var streamLags []time.Duration
	for _, st := range oldStreams {
		select {
		case err := <-st.ended:
			streamLags = append(streamLags, time.Since(revoked))
			if s, _ := status.FromError(err); s.Code() != codes.Unauthenticated || s.Message() != "session revoked" {
				t.Errorf("the stream of a session created before the cutoff ended with %v, want Unauthenticated: session revoked", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the stream of a session created before the cutoff outlived it by 5s")
		}
	}
	for _, st := range newStreams {
		waitTicks(t, "the stream of a session created at the cutoff", st.ended, st.ticks, 2)
	}
	for _, cc := range cached {
		before := cc.calls()
		if _, err := cc.c.Validate(ctx, newToken); err != nil {
			t.Fatalf("a session created at the cutoff: %v", err)
		}
		if n := cc.calls() - before; n != 0 {
			t.Errorf("the cutoff evicted a session created at it: %d calls to validate it", n)
		}
	}
	slices.Sort(cutLags)
	t.Logf("cutoff to rejection by each caching client: %v; to the end of the cut-off streams (as their callers saw it): %v",
		cutLags, streamLags)
}

// percentiles formats p50, p99 and the maximum of ds.
func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	ds = slices.Sorted(slices.Values(ds))
	pct := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	return fmt.Sprintf("p50 %v, p99 %v, max %v", pct(0.50), pct(0.99), ds[len(ds)-1])
}

func last(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[len(ds)-1]
}
