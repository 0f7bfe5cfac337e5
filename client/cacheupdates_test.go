package client_test

import (
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/client"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/sessiondtest"
)

// TestCacheFollowsUpdates: a caching client drops a session whose data
// another client changed (Update, UpdateByID, Extend) as the event arrives,
// and one it changed itself at once; streams of the session go on.
func TestCacheFollowsUpdates(t *testing.T) {
	t.Parallel()
	sd := sessiondtest.Start(t)
	conn, calls := countingConn(t, sd.Addr)
	cached := client.New(conn, client.WithCache(100, time.Minute))
	t.Cleanup(func() { _ = cached.Close() })
	other := client.New(sd.Conn)
	ctx := ctxT(t)
	waitFor(t, "the cache to go live", func() bool { return cached.CacheStats().Live })
	token, s, err := other.Create(ctx, client.NewSession{UserID: "frank", Attributes: map[string]string{"v": "0"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	attr := func() string {
		s, err := cached.Validate(ctx, token)
		if err != nil {
			t.Fatal(err)
		}
		return s.GetAttributes()["v"]
	}
	warm := func() {
		t.Helper()
		attr()
		before := calls.Load()
		attr()
		if n := calls.Load() - before; n != 0 {
			t.Fatalf("a warm validation made %d calls", n)
		}
	}
	shop, _ := serveOrders(t, grpc.ChainStreamInterceptor(client.StreamServerInterceptor(cached)))
	ended, ticks := openStream(t, shop, token)
	waitTicks(t, "the stream", ended, ticks, 1)

	// Through another client: the event evicts.
	warm()
	evicted := cached.CacheStats().UpdateEvictions
	if _, err := other.Update(ctx, token, client.AttributeChange{Set: map[string]string{"v": "1"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the update to reach the cache", func() bool { return attr() == "1" })
	if cached.CacheStats().UpdateEvictions == evicted {
		t.Error("UpdateEvictions did not count the update")
	}
	warm()
	if _, err := other.UpdateByID(ctx, s.GetSessionId(), client.AttributeChange{Set: map[string]string{"v": "2"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the update by id to reach the cache", func() bool { return attr() == "2" })
	warm()
	extended, err := other.Extend(ctx, s.GetSessionId(), 3*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the extension to reach the cache", func() bool {
		got, err := cached.Validate(ctx, token)
		return err == nil && got.GetExpiresAt().AsTime().Equal(extended.GetExpiresAt().AsTime())
	})

	// Through the caching client itself: at once.
	warm()
	if _, err := cached.Update(ctx, token, client.AttributeChange{Set: map[string]string{"v": "3"}}); err != nil {
		t.Fatal(err)
	}
	if got := attr(); got != "3" {
		t.Fatalf("right after its own Update the client served v=%q, want 3", got)
	}
	warm()
	if _, err := cached.UpdateByID(ctx, s.GetSessionId(), client.AttributeChange{Remove: []string{"v"}}); err != nil {
		t.Fatal(err)
	}
	if got := attr(); got != "" {
		t.Fatalf("right after its own UpdateByID the client served v=%q, want none", got)
	}
	warm()
	extended, err = cached.Extend(ctx, s.GetSessionId(), 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := cached.Validate(ctx, token); err != nil || !got.GetExpiresAt().AsTime().Equal(extended.GetExpiresAt().AsTime()) {
		t.Fatalf("right after its own Extend the client served expiry %v, %v; want %v", got.GetExpiresAt().AsTime(), err, extended.GetExpiresAt().AsTime())
	}

	// None of this ended the stream.
	waitTicks(t, "the stream after the updates", ended, ticks, 3)
}

// TestReuseDetectedEndsTheSuccessor: a rotated-away token presented again
// after the rotation grace revokes the session that replaced it
// (REASON_REUSE_DETECTED): caching clients drop it and its streams end.
func TestReuseDetectedEndsTheSuccessor(t *testing.T) {
	t.Parallel()
	cfg := sessiondtest.Config(redistest.Start(t).Addr())
	cfg.Store.RotationGrace = -1 // no grace: any reuse is detected
	sd := sessiondtest.Run(t, cfg)
	cached := client.New(sd.Conn, client.WithCache(100, time.Minute))
	t.Cleanup(func() { _ = cached.Close() })
	other := client.New(sd.Conn)
	ctx := ctxT(t)
	waitFor(t, "the cache to go live", func() bool { return cached.CacheStats().Live })
	old, _ := createSession(t, other, "grace")
	token, _, err := other.StepUp(ctx, old, client.Reauthentication{Methods: []string{"totp"}, AssuranceLevel: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cached.Validate(ctx, token); err != nil {
		t.Fatal(err)
	}
	shop, _ := serveOrders(t, grpc.ChainStreamInterceptor(client.StreamServerInterceptor(cached)))
	ended, ticks := openStream(t, shop, token)
	waitTicks(t, "the successor's stream", ended, ticks, 1)

	// The old token, stolen, is presented again.
	if _, err := other.Validate(ctx, old); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("the rotated-away token: %v, want Unauthenticated", err)
	}
	waitFor(t, "the successor to be dropped", func() bool {
		_, err := cached.Validate(ctx, token)
		return status.Code(err) == codes.Unauthenticated
	})
	select {
	case err := <-ended:
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("the successor's stream ended with %v, want Unauthenticated", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the successor's stream outlived the reuse detection by 5s")
	}
}
