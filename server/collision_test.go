package server_test

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/server"
)

var (
	collisionOnce sync.Once
	collisionA    string
	collisionB    string
)

// collidingUsers returns two user ids whose 32-bit routing tags (the first
// 4 bytes of their SHA-256) are equal: a birthday search, about 10^5 hashes.
func collidingUsers(t *testing.T) (string, string) {
	t.Helper()
	collisionOnce.Do(func() {
		seen := make(map[[4]byte]string, 1<<17)
		for i := range 1 << 22 {
			u := fmt.Sprintf("user-%d", i)
			sum := sha256.Sum256([]byte(u))
			tag := [4]byte(sum[:4])
			if other, ok := seen[tag]; ok {
				collisionA, collisionB = other, u
				return
			}
			seen[tag] = u
		}
	})
	if collisionA == "" {
		t.Fatal("no two user ids with the same routing tag in 4M tries")
	}
	return collisionA, collisionB
}

// TestCollidingUsersStayApart: for two users whose routing tags collide,
// one user's page token and session id are refused for the other
// (INVALID_ARGUMENT, as the contract says), and so is a cursor made up by
// the caller; nothing is revoked by the refused call.
func TestCollidingUsersStayApart(t *testing.T) {
	t.Parallel()
	a, b := collidingUsers(t)
	e := newEnv(t, envOptions{})
	ctx := callCtx(t)
	a1 := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: a})
	a2 := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: a})
	b1 := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: b})
	if a1.GetSession().GetSessionId()[:8] != b1.GetSession().GetSessionId()[:8] {
		t.Fatalf("%s and %s do not share a routing tag: %s, %s", a, b, a1.GetSession().GetSessionId(), b1.GetSession().GetSessionId())
	}

	// except_session_id of the other user: refused, nothing revoked.
	_, err := e.Client.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: a, ExceptSessionId: b1.GetSession().GetSessionId()})
	st := wantCode(t, err, codes.InvalidArgument, "RevokeUserSessions keeping a session of a colliding user")
	if want := "except_session_id: is a session of another user"; st.Message() != want {
		t.Errorf("message %q, want %q", st.Message(), want)
	}
	for _, tok := range []string{a1.GetToken(), a2.GetToken(), b1.GetToken()} {
		if _, err := validate(ctx, e, tok); err != nil {
			t.Fatalf("a session after the refused RevokeUserSessions: %v", err)
		}
	}

	// One user's page token for the other: refused; for its own user: the
	// next page.
	page, err := e.Client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: a, PageSize: 1})
	if err != nil || page.GetNextPageToken() == "" {
		t.Fatalf("the first page of %s: %v, %v", a, page, err)
	}
	_, err = e.Client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: b, PageSize: 1, PageToken: page.GetNextPageToken()})
	wantCode(t, err, codes.InvalidArgument, "ListUserSessions with a colliding user's page token")
	next, err := e.Client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: a, PageSize: 1, PageToken: page.GetNextPageToken()})
	if err != nil || len(next.GetSessions()) != 1 {
		t.Fatalf("the second page of %s with its own token: %v, %v", a, next, err)
	}

	// Cursors made up by the caller: refused.
	forgedV1 := base64.RawURLEncoding.EncodeToString([]byte("p1:" + b1.GetSession().GetSessionId()))
	for name, tok := range map[string]string{
		"a forged cursor":                 server.ForgedPageToken(a2.GetSession().GetSessionId()),
		"an unauthenticated cursor (p1:)": forgedV1,
	} {
		_, err := e.Client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: a, PageSize: 1, PageToken: tok})
		wantCode(t, err, codes.InvalidArgument, "ListUserSessions with "+name)
	}
	all, err := e.Client.ListSessions(ctx, &sessionauthv1.ListSessionsRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if tok := all.GetNextPageToken(); tok != "" {
		_, err = e.Client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: a, PageToken: tok})
		wantCode(t, err, codes.InvalidArgument, "ListUserSessions with a ListSessions page token")
	}
}
