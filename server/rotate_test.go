package server_test

import (
	"maps"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
)

func TestRotateSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := callCtx(t)
	watch := openWatch(t, e)
	old := e.create(t, &sessionauthv1.CreateSessionRequest{
		UserId: "u", Email: "u@example.com", ClientIp: "192.0.2.1", UserAgent: "ua", Attributes: map[string]string{"role": "user"},
		Ttl: durationpb.New(time.Hour), IdleTimeout: durationpb.New(10 * time.Minute),
	})
	e.Clock.Advance(5 * time.Minute)
	rotated, err := e.Client.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: old.GetToken()})
	if err != nil {
		t.Fatal(err)
	}
	o, n := old.GetSession(), rotated.GetSession()
	if rotated.GetToken() == old.GetToken() || n.GetSessionId() == o.GetSessionId() {
		t.Fatal("rotation kept the token or the session id")
	}
	if n.GetUserId() != o.GetUserId() || n.GetEmail() != o.GetEmail() || n.GetClientIp() != o.GetClientIp() || n.GetUserAgent() != o.GetUserAgent() ||
		!maps.Equal(n.GetAttributes(), o.GetAttributes()) || !n.GetCreatedAt().AsTime().Equal(o.GetCreatedAt().AsTime()) ||
		!n.GetExpiresAt().AsTime().Equal(o.GetExpiresAt().AsTime()) {
		t.Fatalf("rotation changed the session's data:\nold %v\nnew %v", o, n)
	}
	if got := n.GetIdleExpiresAt().AsTime().Sub(n.GetLastSeenAt().AsTime()); got != 10*time.Minute || !n.GetLastSeenAt().AsTime().After(o.GetLastSeenAt().AsTime()) {
		t.Fatalf("the idle timeout did not restart: last seen %v, idle expiry %v", n.GetLastSeenAt().AsTime(), n.GetIdleExpiresAt().AsTime())
	}
	_, err = e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: old.GetToken()})
	wantCode(t, err, codes.Unauthenticated, "the old token after rotation")
	if v, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: rotated.GetToken()}); err != nil || v.GetSession().GetSessionId() != n.GetSessionId() {
		t.Fatalf("the new token: %v, %v", v, err)
	}
	list, err := e.Client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "u"})
	if err != nil || len(list.GetSessions()) != 1 || list.GetSessions()[0].GetSessionId() != n.GetSessionId() {
		t.Fatalf("the user's index after rotation: %v, %v", list, err)
	}
	ev, err := watch.Recv()
	if err != nil || ev.GetReason() != sessionauthv1.RevocationEvent_REASON_ROTATED || ev.GetSessionIds()[0] != o.GetSessionId() {
		t.Fatalf("revocation event %v, %v; want the old id, rotated", ev, err)
	}
	_, err = e.Client.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: old.GetToken()})
	wantCode(t, err, codes.Unauthenticated, "rotating an old token again")
	_, err = e.Client.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{})
	wantCode(t, err, codes.InvalidArgument, "rotating an empty token")
}

func TestConcurrentRotationHasOneWinner(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := callCtx(t)
	for round := range 5 {
		tok := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "racer"}).GetToken()
		const n = 12
		var wg sync.WaitGroup
		var mu sync.Mutex
		var winners []string
		for range n {
			wg.Go(func() {
				r, err := e.Client.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: tok})
				switch status.Code(err) {
				case codes.OK:
					mu.Lock()
					winners = append(winners, r.GetToken())
					mu.Unlock()
				case codes.Unauthenticated:
				default:
					t.Errorf("round %d: concurrent rotation: %v", round, err)
				}
			})
		}
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: %d of %d concurrent rotations succeeded, want exactly 1", round, len(winners), n)
		}
		if _, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: winners[0]}); err != nil {
			t.Fatalf("the winner's token: %v", err)
		}
		if _, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: tok}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("the rotated token still validates: %v", err)
		}
	}
	list, err := e.Client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "racer"})
	if err != nil || len(list.GetSessions()) != 5 {
		t.Fatalf("after 5 contested rotations the user has %d sessions (%v), want 5", len(list.GetSessions()), err)
	}
}
