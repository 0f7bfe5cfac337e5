package faulttest

import (
	"context"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/redistest"
)

// The request timeout and health interval TestRedisDownFailsClosed gives
// sessiond, and the margin it allows a failing call past the timeout: up to
// just below the go-redis read timeout (redisTimeout, 1s), so that a call
// that ended in time ended by the request timeout, not by go-redis' own.
// resumeLimit bounds the first success once Redis answers again: go-redis
// stops dialling for up to a second after PoolSize failed dials, and a
// loaded machine adds to that.
const (
	downRequestTimeout = 300 * time.Millisecond
	downHealthInterval = 100 * time.Millisecond
	downMargin         = redisTimeout - downRequestTimeout - 100*time.Millisecond
	resumeLimit        = 4 * time.Second
)

// TestRedisDownFailsClosed hangs (SIGSTOP) and then kills (SIGKILL) the one
// Redis sessiond uses: every kind of call fails with Unavailable within the
// request timeout (plus a small margin), nothing validates, the health
// service turns NOT_SERVING; when Redis answers again (SIGCONT; a restart)
// health is SERVING again and calls succeed within resumeLimit (4s). Once everything is
// stopped, no goroutine is left behind.
//
// It is not parallel: its timings are measured with the other tests paused,
// and goleak sees only its own goroutines.
func TestRedisDownFailsClosed(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Run("hang-kill-restart", testRedisDown)
	// go-redis' background dial probe (pool.tryDial) sees that its client is
	// closed only after its 1s sleep: give it that long before checking.
	for deadline := time.Now().Add(3 * time.Second); goleak.Find(ignore) != nil && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	goleak.VerifyNone(t, ignore)
}

func testRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	rdb := singleClient(t, srv.Addr())
	c, d := startSessiond(t, rdb, downRequestTimeout, downHealthInterval)
	hc := healthpb.NewHealthClient(d.Conn)
	ctx := context.Background()
	hw := watchHealth(t, hc)

	hw.wait(t, healthpb.HealthCheckResponse_SERVING, time.Time{})
	live, err := create(ctx, c, "down-user")
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	gone, err := create(ctx, c, "down-user")
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	if revoked, err := revoke(ctx, c, gone.GetToken()); err != nil || !revoked {
		t.Fatalf("RevokeSession = %v, %v", revoked, err)
	}

	// Hung: the process is there but does not answer.
	pid, err := strconv.Atoi(srv.Info(t, "server", "process_id"))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) }) // Stop's SIGTERM needs it
	hung := time.Now()
	failClosed(t, c, "hung", live.GetToken(), gone.GetToken(), true)
	t.Logf("hung: health NOT_SERVING %v after SIGSTOP", hw.wait(t, healthpb.HealthCheckResponse_NOT_SERVING, hung).Sub(hung).Round(time.Millisecond))
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	ok := firstSuccess(t, c, live.GetToken())
	t.Logf("hung: first successful validation %v after SIGCONT; health SERVING %v after", ok.Sub(back).Round(time.Millisecond),
		hw.wait(t, healthpb.HealthCheckResponse_SERVING, back).Sub(back).Round(time.Millisecond))
	if code := validate(ctx, c, gone.GetToken()); code != codes.Unauthenticated {
		t.Errorf("revoked session after the hang: %v, want Unauthenticated", code)
	}

	// Killed, then restarted (empty: this Redis has no persistence).
	srv.Kill()
	killed := time.Now()
	failClosed(t, c, "killed", live.GetToken(), gone.GetToken(), false)
	t.Logf("killed: health NOT_SERVING %v after the kill", hw.wait(t, healthpb.HealthCheckResponse_NOT_SERVING, killed).Sub(killed).Round(time.Millisecond))
	before := time.Now()
	srv.Restart()
	back = time.Now()
	deadline := back.Add(resumeLimit)
	for {
		if _, err := create(ctx, c, "down-user"); err == nil {
			break
		} else if code := status.Code(err); code != codes.Unavailable {
			t.Fatalf("CreateSession after the restart: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no successful call within %v of Redis' return", resumeLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ok = time.Now()
	t.Logf("restarted: Redis answering %v after the restart began, health SERVING %v after it began; first successful call %v after Redis answered",
		back.Sub(before).Round(time.Millisecond), hw.wait(t, healthpb.HealthCheckResponse_SERVING, before).Sub(before).Round(time.Millisecond),
		ok.Sub(back).Round(time.Millisecond))
	// Nothing was persisted: the old sessions are gone, and say so.
	for _, tok := range []string{live.GetToken(), gone.GetToken()} {
		if code := validate(ctx, c, tok); code != codes.Unauthenticated {
			t.Errorf("a session from before the restart: %v, want Unauthenticated", code)
		}
	}
}

// failClosed makes one call of each kind and checks that each fails with
// Unavailable within the request timeout plus the margin (and, when Redis
// hangs, not before the timeout: nothing answered).
func failClosed(t *testing.T, c sessionauthv1.SessionAuthorityClient, what, live, revoked string, hung bool) {
	t.Helper()
	ctx := context.Background()
	calls := []struct {
		name string
		do   func(ctx context.Context) error
	}{
		{"ValidateSession(live)", func(ctx context.Context) error {
			_, err := c.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: live})
			return err
		}},
		{"ValidateSession(revoked)", func(ctx context.Context) error {
			_, err := c.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: revoked})
			return err
		}},
		{"CreateSession", func(ctx context.Context) error {
			_, err := c.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "down-user"})
			return err
		}},
		{"RevokeSession", func(ctx context.Context) error {
			_, err := c.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: live}})
			return err
		}},
		{"ListUserSessions", func(ctx context.Context) error {
			_, err := c.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "down-user"})
			return err
		}},
		{"RevokeUserSessions", func(ctx context.Context) error {
			_, err := c.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: "down-user"})
			return err
		}},
	}
	var slowest time.Duration
	for _, cl := range calls {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		start := time.Now()
		err := cl.do(cctx)
		took := time.Since(start)
		cancel()
		slowest = max(slowest, took)
		if code := status.Code(err); code != codes.Unavailable {
			t.Errorf("%s: %s = %v, want Unavailable", what, cl.name, err)
		}
		if took > downRequestTimeout+downMargin {
			t.Errorf("%s: %s failed after %v, want within %v + %v", what, cl.name, took, downRequestTimeout, downMargin)
		}
		if hung && took < downRequestTimeout-10*time.Millisecond {
			t.Errorf("%s: %s failed after %v, before the request timeout %v: what answered?", what, cl.name, took, downRequestTimeout)
		}
	}
	t.Logf("%s: %d kinds of call failed with Unavailable, the slowest in %v (request timeout %v)", what, len(calls), slowest.Round(time.Millisecond), downRequestTimeout)
}

// firstSuccess validates token every 10ms until it is OK, and returns when.
func firstSuccess(t *testing.T, c sessionauthv1.SessionAuthorityClient, token string) time.Time {
	t.Helper()
	deadline := time.Now().Add(resumeLimit)
	for {
		code := validate(context.Background(), c, token)
		if code == codes.OK {
			return time.Now()
		}
		if code != codes.Unavailable {
			t.Fatalf("validation while Redis returns: %v", code)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no successful call within %v of Redis' return", resumeLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
