package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/server"
)

// openWatch opens a WatchRevocations stream and waits for its headers, i.e.
// for the server's subscription to be live.
func openWatch(t *testing.T, e *env) sessionauthv1.SessionAuthority_WatchRevocationsClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	deadline := time.Now().Add(5 * time.Second)
	for {
		stream, err := e.Client.WatchRevocations(ctx, &sessionauthv1.WatchRevocationsRequest{})
		if err == nil {
			var md metadata.MD
			if md, err = stream.Header(); err == nil && len(md.Get(server.WatchReadyHeader)) == 1 {
				return stream
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("WatchRevocations: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // the server may not be subscribed yet
	}
}

func TestWatchRevocations(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := callCtx(t)
	streams := []sessionauthv1.SessionAuthority_WatchRevocationsClient{openWatch(t, e), openWatch(t, e)}
	a := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"})
	b := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"})
	c := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"})
	if _, err := e.Client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: a.GetToken()}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Client.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: "u", ExceptSessionId: c.GetSession().GetSessionId()}); err != nil {
		t.Fatal(err)
	}
	for i, stream := range streams {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetReason() != sessionauthv1.RevocationEvent_REASON_LOGOUT || ev.GetUserId() != "u" ||
			len(ev.GetSessionIds()) != 1 || ev.GetSessionIds()[0] != a.GetSession().GetSessionId() {
			t.Fatalf("stream %d: first event %v, want the logout of %s", i, ev, a.GetSession().GetSessionId())
		}
		if strings.Contains(ev.String(), a.GetToken()[21:]) {
			t.Fatal("an event carries a token")
		}
		ev, err = stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetReason() != sessionauthv1.RevocationEvent_REASON_USER_REVOKED || len(ev.GetSessionIds()) != 1 || ev.GetSessionIds()[0] != b.GetSession().GetSessionId() {
			t.Fatalf("stream %d: second event %v, want the user revocation of %s only", i, ev, b.GetSession().GetSessionId())
		}
	}

	// Losing Redis ends every stream with Unavailable: the client must drop
	// its cache, since events may be missed from now on.
	e.Redis.Stop()
	for i, stream := range streams {
		done := make(chan error, 1)
		go func() { _, err := stream.Recv(); done <- err }()
		select {
		case err := <-done:
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("stream %d ended with %v, want Unavailable", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("stream %d still open 10s after Redis went away", i)
		}
	}
	// And no new stream is accepted while there is no subscription.
	stream, err := e.Client.WatchRevocations(ctx, &sessionauthv1.WatchRevocationsRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a new stream with Redis down: %v, want Unavailable", err)
	}
}
