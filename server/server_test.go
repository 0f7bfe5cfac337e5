package server_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/sessiondtest"
	"github.com/sessiond/sessiond/internal/testutil"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/store"
)

type (
	env        struct{ *sessiondtest.Env }
	envOptions = sessiondtest.EnvOptions
)

// newEnv starts a redis-server and sessiond (daemon.Run, the wiring of
// cmd/sessiond) on it, and clients; all stopped at the test's end.
func newEnv(t testing.TB, o envOptions) *env { return &env{sessiondtest.NewEnv(t, o)} }

var (
	callCtx  = testutil.CallCtx
	wantCode = testutil.WantCode
)

func (e *env) create(t *testing.T, req *sessionauthv1.CreateSessionRequest) *sessionauthv1.CreateSessionResponse {
	t.Helper()
	return e.Create(t, req)
}

func TestEveryRPCEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := callCtx(t)

	created := e.create(t, &sessionauthv1.CreateSessionRequest{
		UserId: "user-42", Email: "ada@example.com", ClientIp: "2001:db8::1", UserAgent: "Firefox/140",
		Attributes: map[string]string{"tenant": "acme"}, Ttl: durationpb.New(2 * time.Hour), IdleTimeout: durationpb.New(time.Hour),
	})
	s := created.GetSession()
	if created.GetToken() == "" || s.GetSessionId() == "" || s.GetUserId() != "user-42" || s.GetEmail() != "ada@example.com" ||
		s.GetClientIp() != "2001:db8::1" || s.GetUserAgent() != "Firefox/140" || s.GetAttributes()["tenant"] != "acme" {
		t.Fatalf("CreateSession returned %v", created)
	}
	if got := s.GetExpiresAt().AsTime().Sub(s.GetCreatedAt().AsTime()); got != 2*time.Hour {
		t.Fatalf("expires_at - created_at = %v, want the requested 2h", got)
	}
	if got := s.GetIdleExpiresAt().AsTime().Sub(s.GetLastSeenAt().AsTime()); got != time.Hour {
		t.Fatalf("idle_expires_at - last_seen_at = %v, want 1h", got)
	}
	if strings.Contains(s.String(), created.GetToken()) {
		t.Fatal("the Session message contains the token")
	}

	v, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: created.GetToken()})
	if err != nil || v.GetSession().GetSessionId() != s.GetSessionId() || v.GetSession().GetAttributes()["tenant"] != "acme" {
		t.Fatalf("ValidateSession = %v, %v", v, err)
	}

	second := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "user-42"})
	if got := second.GetSession().GetExpiresAt().AsTime().Sub(second.GetSession().GetCreatedAt().AsTime()); got != server.DefaultTTL {
		t.Fatalf("default ttl = %v, want %v", got, server.DefaultTTL)
	}
	list, err := e.Client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "user-42"})
	if err != nil || len(list.GetSessions()) != 2 || list.GetSessions()[0].GetSessionId() != second.GetSession().GetSessionId() || list.GetNextPageToken() != "" {
		t.Fatalf("ListUserSessions = %v, %v; want both, newest first", list, err)
	}

	// Logout by token; again is OK with revoked=false.
	for i, want := range []bool{true, false} {
		r, err := e.Client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: created.GetToken()}})
		if err != nil || r.GetRevoked() != want {
			t.Fatalf("RevokeSession(token) #%d = %v, %v; want revoked=%v", i, r, err, want)
		}
	}
	_, err = e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: created.GetToken()})
	wantCode(t, err, codes.Unauthenticated, "validate after logout")

	// Log out everywhere but the current device, then that device by id.
	third := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "user-42"})
	ru, err := e.Client.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: "user-42", ExceptSessionId: third.GetSession().GetSessionId()})
	if err != nil || ru.GetRevokedCount() != 1 {
		t.Fatalf("RevokeUserSessions(except) = %v, %v; want 1", ru, err)
	}
	if _, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: third.GetToken()}); err != nil {
		t.Fatalf("the kept session: %v", err)
	}
	for i, want := range []bool{true, false} {
		r, err := e.Client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_SessionId{SessionId: third.GetSession().GetSessionId()}})
		if err != nil || r.GetRevoked() != want {
			t.Fatalf("RevokeSession(id) #%d = %v, %v; want revoked=%v", i, r, err, want)
		}
	}
	ru, err = e.Client.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: "user-42"})
	if err != nil || ru.GetRevokedCount() != 0 {
		t.Fatalf("RevokeUserSessions with nothing left = %v, %v", ru, err)
	}
	if n := e.RDB.DBSize(ctx).Val(); n != 0 {
		t.Fatalf("%d keys left after every session was revoked", n)
	}
}

func TestListUserSessionsPagination(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := callCtx(t)
	var want []string
	for range 5 {
		want = append([]string{e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "pager"}).GetSession().GetSessionId()}, want...)
		e.Clock.Advance(time.Millisecond)
	}
	var got []string
	tok := ""
	for range 10 {
		resp, err := e.Client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "pager", PageSize: 2, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetSessions()) > 2 {
			t.Fatalf("page of %d with page_size 2", len(resp.GetSessions()))
		}
		for _, s := range resp.GetSessions() {
			got = append(got, s.GetSessionId())
		}
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("pages listed %v, want %v", got, want)
	}
}

func TestInvalidArgument(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	other := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "someone-else"})
	before := e.RDB.DBSize(callCtx(t)).Val()
	long := func(n int) string { return strings.Repeat("x", n) }
	manyAttrs := map[string]string{}
	for i := range 33 {
		manyAttrs[fmt.Sprint("k", i)] = "v"
	}
	bigAttrs := map[string]string{}
	for i := range 10 {
		bigAttrs[fmt.Sprint("k", i)] = long(1000)
	}
	d := durationpb.New
	cases := []struct {
		name  string
		call  func(ctx context.Context) error
		field string
	}{
		{"create without user_id", create(e, &sessionauthv1.CreateSessionRequest{}), "user_id"},
		{"user_id too long", create(e, &sessionauthv1.CreateSessionRequest{UserId: long(257)}), "user_id"},
		{"user_id with newline", create(e, &sessionauthv1.CreateSessionRequest{UserId: "a\nb"}), "user_id"},
		{"email too long", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", Email: long(321)}), "email"},
		{"user_agent too long", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", UserAgent: long(513)}), "user_agent"},
		{"client_ip not an IP", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", ClientIp: "localhost"}), "client_ip"},
		{"too many attributes", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", Attributes: manyAttrs}), "attributes"},
		{"attributes too big", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", Attributes: bigAttrs}), "attributes"},
		{"attribute value too big", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", Attributes: map[string]string{"k": long(1025)}}), "attributes"},
		{"empty attribute key", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", Attributes: map[string]string{"": "v"}}), "attributes"},
		{"negative ttl", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", Ttl: d(-time.Second)}), "ttl"},
		{"ttl under 1s", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", Ttl: d(time.Millisecond)}), "ttl"},
		{"ttl over max", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", Ttl: d(server.DefaultMaxTTL + time.Second)}), "ttl"},
		{"invalid ttl", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", Ttl: &durationpb.Duration{Seconds: 1, Nanos: -5}}), "ttl"},
		{"negative idle", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", IdleTimeout: d(-time.Minute)}), "idle_timeout"},
		{"validate empty token", func(ctx context.Context) error {
			_, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{})
			return err
		}, "token"},
		{"validate oversized token", func(ctx context.Context) error {
			_, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: long(2000)})
			return err
		}, "token"},
		{"revoke without target", func(ctx context.Context) error {
			_, err := e.Client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{})
			return err
		}, "target"},
		{"revoke empty token", func(ctx context.Context) error {
			_, err := e.Client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{}})
			return err
		}, "token"},
		{"revoke malformed id", func(ctx context.Context) error {
			_, err := e.Client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_SessionId{SessionId: "abc"}})
			return err
		}, "session_id"},
		{"list without user", func(ctx context.Context) error {
			_, err := e.Client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{})
			return err
		}, "user_id"},
		{"list negative page size", func(ctx context.Context) error {
			_, err := e.Client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "u", PageSize: -1})
			return err
		}, "page_size"},
		{"list page size over max", func(ctx context.Context) error {
			_, err := e.Client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "u", PageSize: 201})
			return err
		}, "page_size"},
		{"list bad page token", func(ctx context.Context) error {
			_, err := e.Client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "u", PageToken: "!!"})
			return err
		}, "page_token"},
		{"list another user's page token", func(ctx context.Context) error {
			_, err := e.Client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "u", PageToken: server.ForgedPageToken(other.GetSession().GetSessionId())})
			return err
		}, "page_token"},
		{"revoke-user without user", func(ctx context.Context) error {
			_, err := e.Client.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{})
			return err
		}, "user_id"},
		{"revoke-user malformed except", func(ctx context.Context) error {
			_, err := e.Client.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: "u", ExceptSessionId: "nope"})
			return err
		}, "except_session_id"},
		{"revoke-user except of another user", func(ctx context.Context) error {
			_, err := e.Client.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: "u", ExceptSessionId: other.GetSession().GetSessionId()})
			return err
		}, "except_session_id"},
	}
	for _, tc := range cases {
		err := tc.call(callCtx(t))
		st := wantCode(t, err, codes.InvalidArgument, tc.name)
		if !strings.HasPrefix(st.Message(), tc.field+": ") {
			t.Errorf("%s: message %q does not start with the field %q", tc.name, st.Message(), tc.field)
		}
		var br *errdetails.BadRequest
		for _, d := range st.Details() {
			if b, ok := d.(*errdetails.BadRequest); ok {
				br = b
			}
		}
		if br == nil || br.GetFieldViolations()[0].GetField() != tc.field {
			t.Errorf("%s: no BadRequest detail naming %q: %v", tc.name, tc.field, st.Details())
		}
	}
	if after := e.RDB.DBSize(callCtx(t)).Val(); after != before {
		t.Fatalf("rejected requests changed Redis: %d keys before, %d after", before, after)
	}
}

func create(e *env, req *sessionauthv1.CreateSessionRequest) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := e.Client.CreateSession(ctx, req)
		return err
	}
}

func TestUnauthenticatedIsOneAnswer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := callCtx(t)
	revoked := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken()
	if _, err := e.Client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: revoked}}); err != nil {
		t.Fatal(err)
	}
	expired := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u", Ttl: durationpb.New(time.Minute)}).GetToken()
	idle := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u", Ttl: durationpb.New(time.Hour), IdleTimeout: durationpb.New(2 * time.Minute)}).GetToken()
	live := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u", Ttl: durationpb.New(time.Hour), IdleTimeout: durationpb.New(2 * time.Minute)}).GetToken()
	e.Clock.Advance(90 * time.Second)
	if _, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: live}); err != nil {
		t.Fatalf("live token at 90s: %v", err) // this validation slides its idle expiry
	}
	e.Clock.Advance(90 * time.Second)
	unknown := strings.Repeat("A", 72)
	messages := map[string]bool{}
	for name, tok := range map[string]string{
		"unknown": unknown, "malformed": "hello", "revoked": revoked, "expired": expired, "idle": idle, "truncated": revoked[:71],
	} {
		_, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: tok})
		messages[wantCode(t, err, codes.Unauthenticated, name).Message()] = true
	}
	if len(messages) != 1 {
		t.Fatalf("different messages for different failures: %v", messages)
	}
	if _, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: live}); err != nil {
		t.Fatalf("the session validated within its idle timeout has ended: %v", err)
	}
}

func TestUnavailableWhileRedisIsDownAndRecovery(t *testing.T) {
	t.Parallel()
	// Explicit: with Redis stopped one read can spend a while in go-redis'
	// dial retries; the request timeout is what bounds it.
	const requestTimeout = time.Second
	e := newEnv(t, envOptions{Service: server.Config{RequestTimeout: requestTimeout}})
	ctx := callCtx(t)
	tok := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken()
	waitHealth(t, e, healthpb.HealthCheckResponse_SERVING)

	e.Redis.Stop()
	start := time.Now()
	_, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: tok})
	st := wantCode(t, err, codes.Unavailable, "validate with Redis down")
	if strings.Contains(strings.ToLower(st.Message()), "dial") || strings.Contains(st.Message(), "refused") {
		t.Fatalf("Redis error text on the wire: %q", st.Message())
	}
	if d := time.Since(start); d >= requestTimeout+time.Second {
		t.Fatalf("failing closed took %v with a %v request timeout", d, requestTimeout)
	}
	_, err = e.Client.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "u"})
	wantCode(t, err, codes.Unavailable, "create with Redis down")
	_, err = e.Client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "u"})
	wantCode(t, err, codes.Unavailable, "list with Redis down")
	waitHealth(t, e, healthpb.HealthCheckResponse_NOT_SERVING)
	if r, err := e.Health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("overall health with Redis down = %v, %v; want SERVING (the process is alive)", r, err)
	}

	e.Redis.Restart()
	waitHealth(t, e, healthpb.HealthCheckResponse_SERVING)
	fresh := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken()
	if _, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: fresh}); err != nil {
		t.Fatalf("after Redis returned: %v", err)
	}
}

func waitHealth(t *testing.T, e *env, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := e.Health.Check(callCtx(t), &healthpb.HealthCheckRequest{Service: sessionauthv1.SessionAuthority_ServiceDesc.ServiceName})
		if err == nil && r.GetStatus() == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("health of %s = %v, %v; want %v", sessionauthv1.SessionAuthority_ServiceDesc.ServiceName, r, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pauseRedis makes the test's Redis stop answering clients for d, as an
// overloaded or partitioned server would.
func pauseRedis(t *testing.T, e *env, d time.Duration) {
	t.Helper()
	e.PauseRedis(t, d)
}

func TestStoreTimeoutIsUnavailable(t *testing.T) {
	t.Parallel()
	cfg := server.Config{}
	cfg.RequestTimeout = 200 * time.Millisecond
	e := newEnv(t, envOptions{Service: cfg})
	tok := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken()
	pauseRedis(t, e, 5*time.Second)
	start := time.Now()
	_, err := e.Client.ValidateSession(callCtx(t), &sessionauthv1.ValidateSessionRequest{Token: tok})
	wantCode(t, err, codes.Unavailable, "validate with Redis hung")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v with a 200ms request timeout", d)
	}
}

func TestClientDeadlineIsDeadlineExceeded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	tok := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken()
	pauseRedis(t, e, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: tok})
	wantCode(t, err, codes.DeadlineExceeded, "validate past the caller's deadline")
}

// TestRandomInputNeverBreaksTheServer sends a bounded number of random
// requests of every kind and checks that each gets a defined status (never
// Unknown or Internal), and that the server still serves afterwards.
func TestRandomInputNeverBreaksTheServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := callCtx(t)
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("ab_-=/+{}:.\x00\t\n é漢🙂0123456789ABCDEF")
	str := func(max int) string {
		n := r.IntN(max + 1)
		var b strings.Builder
		for range n {
			b.WriteRune(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	valid := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"})
	for i := range 400 {
		var err error
		switch i % 5 {
		case 0:
			attrs := map[string]string{}
			for range r.IntN(4) {
				attrs[str(8)] = str(20)
			}
			_, err = e.Client.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{
				UserId: str(10), Email: str(10), ClientIp: str(6), UserAgent: str(10), Attributes: attrs,
				Ttl: durationpb.New(time.Duration(r.Int64N(int64(2*server.DefaultMaxTTL))) - server.DefaultMaxTTL/2),
			})
		case 1:
			tok := str(80)
			if r.IntN(2) == 0 {
				b := []byte(valid.GetToken())
				b[r.IntN(len(b))] ^= byte(1 << r.IntN(7))
				tok = string(b)
			}
			_, err = e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: tok})
		case 2:
			_, err = e.Client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_SessionId{SessionId: str(50)}})
		case 3:
			_, err = e.Client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: str(10), PageSize: r.Int32N(300) - 50, PageToken: str(20)})
		case 4:
			_, err = e.Client.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: str(10), ExceptSessionId: str(50)})
		}
		switch status.Code(err) {
		case codes.OK, codes.InvalidArgument, codes.Unauthenticated:
		default:
			t.Fatalf("request %d: unexpected %v", i, err)
		}
	}
	if _, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: valid.GetToken()}); err != nil {
		t.Fatalf("the server no longer validates a good token: %v", err)
	}
}

// TestLogsNeverHoldTokens runs every RPC with logging at debug level and
// checks that no token, nor any part of its secret, appears in the logs.
func TestLogsNeverHoldTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{Store: store.Config{MaxSessionsPerUser: 2}})
	ctx := callCtx(t)
	var tokens []string
	for range 4 {
		tokens = append(tokens, e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u", Email: "u@example.com"}).GetToken())
	}
	for _, tok := range tokens {
		_, _ = e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: tok})
		_, _ = e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: testutil.Tampered(tok)})
	}
	e.Clock.Advance(2 * time.Minute)
	_, _ = e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: tokens[3]})
	_, _ = e.Client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "u"})
	_, _ = e.Client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: tokens[3]}})
	_, _ = e.Client.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: "u"})
	e.Redis.Stop()
	_, _ = e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: tokens[2]})
	logs := e.Logs.String()
	if !strings.Contains(logs, "session created") {
		t.Fatalf("debug logs were not captured:\n%s", logs)
	}
	for _, tok := range tokens {
		if strings.Contains(logs, tok[28:]) {
			t.Fatalf("a token appears in the logs")
		}
	}
}
