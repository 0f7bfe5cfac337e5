package faulttest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/client"
	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/testutil"
)

// freePort returns a loopback address nobody listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestSIGKILLUnderLoad kills sessiond (SIGKILL, the real binary) under a
// load of creates, revocations and cached validations, and starts it again
// on the same address: the caching client's revocation stream and cache
// come back by themselves (no call of the application's), and no
// acknowledged write is lost: every acknowledged create validates and every
// acknowledged revocation stays revoked, through the cache too. A
// revocation that answered an error (sessiond killed between its EXEC and
// its answer, say) may or may not have been applied: its session is
// checked for neither.
func TestSIGKILLUnderLoad(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	bin := testutil.BuildSessiond(t)
	addr := freePort(t)
	args := []string{"--redis-url=" + srv.URL(), "--listen=" + addr, "--rate-limit-create=0", "--rate-limit-failed-validations=0"}
	first := testutil.StartSessiond(t, bin, args...)

	conn, err := grpc.NewClient(addr, append(client.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl := client.New(conn, client.WithCache(10_000, time.Minute), client.WithReconnectBackoff(50*time.Millisecond, 500*time.Millisecond))
	defer cl.Close()
	waitFor(t, 10*time.Second, "the cache live", func() bool { return cl.CacheStats().Live })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var (
		mu              sync.Mutex
		created         = map[string]bool{} // acknowledged creates: token → revoked (acknowledged)
		unsure          = map[string]bool{} // tokens whose revocation failed: applied or not
		firstOK         time.Time           // the first call that succeeded after the restart
		restarted       time.Time
		failed, revokes int
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; i < 5000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
				tok, _, err := cl.Create(cctx, client.NewSession{UserID: fmt.Sprintf("kill-%d-%d", w, i%20)})
				if err == nil {
					_, err = cl.Validate(cctx, tok)
				}
				revoked, revokeFailed := false, false
				if err == nil && i%3 == 0 {
					revoked, err = cl.Revoke(cctx, tok)
					revokeFailed = err != nil
				}
				ccancel()
				mu.Lock()
				if revokeFailed {
					unsure[tok] = true
				}
				if tok != "" {
					// A create that answered is acknowledged, whatever came after.
					if _, seen := created[tok]; !seen || revoked {
						created[tok] = revoked
					}
				}
				if revoked {
					revokes++
				}
				if err != nil {
					failed++
					mu.Unlock()
					time.Sleep(20 * time.Millisecond)
					continue
				}
				if !restarted.IsZero() && firstOK.IsZero() {
					firstOK = time.Now()
				}
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	waitFor(t, 10*time.Second, "load warm-up", func() bool { mu.Lock(); defer mu.Unlock(); return len(created) >= 200 })
	first.Kill()
	killed := time.Now()
	dropsBefore := cl.CacheStats().Drops
	testutil.StartSessiond(t, bin, args...)
	mu.Lock()
	restarted = time.Now()
	mu.Unlock()
	waitFor(t, 10*time.Second, "a successful call after the restart", func() bool { mu.Lock(); defer mu.Unlock(); return !firstOK.IsZero() })
	waitFor(t, 10*time.Second, "the cache live again", func() bool { return cl.CacheStats().Live })
	cacheBack := time.Now()
	time.Sleep(300 * time.Millisecond) // load on the restarted sessiond
	close(stop)
	wg.Wait()
	if st := cl.CacheStats(); st.Drops <= dropsBefore && st.Drops == 0 {
		t.Errorf("the cache was never dropped although its sessiond was killed: %+v", st)
	}

	// No acknowledged write lost: checked through a fresh client, and
	// through the caching one.
	fresh := sessionauthv1.NewSessionAuthorityClient(conn)
	lost, resurrected := 0, 0
	var why []string // the first answers of lost or resurrected sessions
	mu.Lock()
	defer mu.Unlock()
	for tok, revoked := range created {
		if unsure[tok] && !revoked {
			continue
		}
		_, err := fresh.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: tok})
		_, cerr := cl.Validate(ctx, tok)
		bad := false
		switch {
		case revoked && (status.Code(err) != codes.Unauthenticated || status.Code(cerr) != codes.Unauthenticated):
			resurrected++
			bad = true
		case !revoked && (err != nil || cerr != nil):
			lost++
			bad = true
		}
		if bad && len(why) < 3 {
			why = append(why, fmt.Sprintf("revoked %v: ValidateSession %v, cached client %v", revoked, err, cerr))
		}
	}
	if lost > 0 || resurrected > 0 {
		t.Fatalf("of %d acknowledged creates (%d revoked, %d with a revocation that failed, not checked): %d lost, %d revocations undone; %v",
			len(created), revokes, len(unsure), lost, resurrected, why)
	}
	t.Logf("SIGKILL under load: restarted %v after the kill; first successful call %v after the restart, cache live again %v after it; "+
		"%d calls failed meanwhile; %d acknowledged creates and %d revocations all intact (%d revocations failed, not checked)",
		restarted.Sub(killed).Round(time.Millisecond), firstOK.Sub(restarted).Round(time.Millisecond), cacheBack.Sub(restarted).Round(time.Millisecond),
		failed, len(created), revokes, len(unsure))
}
