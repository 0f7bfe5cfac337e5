package faulttest

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/testutil"
)

// TestRevocationSeenByEveryReplica runs two sessiond processes (the real
// binary) on one Redis: a session created and revoked through A never
// validates through B, in up to 10,000 tries from a few goroutines (for at
// most 30s, and at least 2,000 tries: a loaded machine makes fewer).
func TestRevocationSeenByEveryReplica(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	bin := testutil.BuildSessiond(t)
	// B's limit on failed validations per caller is off: this test counts
	// what B answers for a revoked token, not how fast it lets one caller
	// fail.
	a := dialProcess(t, testutil.StartSessiond(t, bin, "--redis-url="+srv.URL()))
	b := dialProcess(t, testutil.StartSessiond(t, bin, "--redis-url="+srv.URL(), "--rate-limit-failed-validations=0"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	resp, err := create(ctx, a, "replica-user")
	if err != nil {
		t.Fatalf("CreateSession through A: %v", err)
	}
	token := resp.GetToken()
	if code := validate(ctx, b, token); code != codes.OK {
		t.Fatalf("ValidateSession through B before the revoke: %v, want OK", code)
	}
	if revoked, err := revoke(ctx, a, token); err != nil || !revoked {
		t.Fatalf("RevokeSession through A = %v, %v", revoked, err)
	}

	const total, atLeast, workers = 10_000, 2_000, 4
	deadline := time.Now().Add(30 * time.Second)
	var (
		mu   sync.Mutex
		seen = map[codes.Code]int{}
		wg   sync.WaitGroup
	)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			local := map[codes.Code]int{}
			for range total / workers {
				if time.Now().After(deadline) {
					break
				}
				local[validate(ctx, b, token)]++
			}
			mu.Lock()
			for k, v := range local {
				seen[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	n := 0
	for _, v := range seen {
		n += v
	}
	t.Logf("%d validations of the revoked token through B in %v: %v", n, elapsed.Round(time.Millisecond), seen)
	if n < atLeast {
		t.Errorf("made %d validations in the time allowed, want at least %d", n, atLeast)
	}
	if got := seen[codes.OK]; got != 0 {
		t.Errorf("%d validations of a revoked session succeeded through B, want 0", got)
	}
	if got := seen[codes.Unauthenticated]; got != n {
		t.Errorf("%d of %d validations answered Unauthenticated, want all", got, n)
	}
}

// dialProcess is a gRPC client of a sessiond process, closed at the end of
// the test.
func dialProcess(t *testing.T, p *testutil.Process) sessionauthv1.SessionAuthorityClient {
	t.Helper()
	conn, err := grpc.NewClient(p.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return sessionauthv1.NewSessionAuthorityClient(conn)
}
