package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/redis/go-redis/v9"
	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/testutil"
	"github.com/sessiond/sessiond/server/store"
)

type env struct {
	redis  *redistest.Server
	rdb    *redis.Client
	client sessionauthv1.SessionAuthorityClient
	health healthpb.HealthClient
	authz  authv3.AuthorizationClient // with envOptions.extAuthz set
	clock  *testutil.Clock
	logs   *testutil.SyncBuffer
	addr   string // the service's address
}

type envOptions struct {
	cfg      Config
	storeCfg store.Config
	extAuthz *ExtAuthzConfig
	// grpcOpts are passed on to NewGRPCServer (a test's own interceptors).
	grpcOpts []grpc.ServerOption
}

// newEnv starts a redis-server, the service on a loopback TCP listener with
// the same wiring as cmd/sessiond, and a client; all stopped at the test's end.
func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	srv := redistest.Start(t)
	e := &env{redis: srv, rdb: srv.Client(t), logs: &testutil.SyncBuffer{}, clock: testutil.NewClock()}
	if o.cfg == (Config{}) {
		o.cfg = DefaultConfig
	}
	if o.storeCfg.Clock == nil {
		o.storeCfg.Clock = e.clock.Now
	}
	rdb := redis.NewClient(&redis.Options{
		Addr: srv.Addr(), ContextTimeoutEnabled: true,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: 1,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	st := store.New(rdb, o.storeCfg)
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc := New(st, o.cfg, log, WithClock(e.clock.Now))
	hs := health.NewServer()
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { WatchHealth(ctx, st, hs, 50*time.Millisecond, log); close(watched) }()
	revoked := make(chan struct{})
	go func() { svc.RunRevocations(ctx); close(revoked) }()
	t.Cleanup(func() { cancel(); <-watched; <-revoked })
	conn := testutil.Serve(t, NewGRPCServer(svc, hs, GRPCOptions{Reflection: true, ExtAuthz: o.extAuthz, ServerOptions: o.grpcOpts}))
	e.addr = conn.Target()
	e.client = sessionauthv1.NewSessionAuthorityClient(conn)
	e.health = healthpb.NewHealthClient(conn)
	e.authz = authv3.NewAuthorizationClient(conn)
	return e
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) create(t *testing.T, req *sessionauthv1.CreateSessionRequest) *sessionauthv1.CreateSessionResponse {
	t.Helper()
	resp, err := e.client.CreateSession(callCtx(t), req)
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return resp
}

func wantCode(t *testing.T, err error, code codes.Code, what string) *status.Status {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("%s: code %v (%q), want %v", what, st.Code(), st.Message(), code)
	}
	return st
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

	v, err := e.client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: created.GetToken()})
	if err != nil || v.GetSession().GetSessionId() != s.GetSessionId() || v.GetSession().GetAttributes()["tenant"] != "acme" {
		t.Fatalf("ValidateSession = %v, %v", v, err)
	}

	second := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "user-42"})
	if got := second.GetSession().GetExpiresAt().AsTime().Sub(second.GetSession().GetCreatedAt().AsTime()); got != DefaultConfig.DefaultTTL {
		t.Fatalf("default ttl = %v, want %v", got, DefaultConfig.DefaultTTL)
	}
	list, err := e.client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "user-42"})
	if err != nil || len(list.GetSessions()) != 2 || list.GetSessions()[0].GetSessionId() != second.GetSession().GetSessionId() || list.GetNextPageToken() != "" {
		t.Fatalf("ListUserSessions = %v, %v; want both, newest first", list, err)
	}

	// Logout by token; again is OK with revoked=false.
	for i, want := range []bool{true, false} {
		r, err := e.client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: created.GetToken()}})
		if err != nil || r.GetRevoked() != want {
			t.Fatalf("RevokeSession(token) #%d = %v, %v; want revoked=%v", i, r, err, want)
		}
	}
	_, err = e.client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: created.GetToken()})
	wantCode(t, err, codes.Unauthenticated, "validate after logout")

	// Log out everywhere but the current device, then that device by id.
	third := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "user-42"})
	ru, err := e.client.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: "user-42", ExceptSessionId: third.GetSession().GetSessionId()})
	if err != nil || ru.GetRevokedCount() != 1 {
		t.Fatalf("RevokeUserSessions(except) = %v, %v; want 1", ru, err)
	}
	if _, err := e.client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: third.GetToken()}); err != nil {
		t.Fatalf("the kept session: %v", err)
	}
	for i, want := range []bool{true, false} {
		r, err := e.client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_SessionId{SessionId: third.GetSession().GetSessionId()}})
		if err != nil || r.GetRevoked() != want {
			t.Fatalf("RevokeSession(id) #%d = %v, %v; want revoked=%v", i, r, err, want)
		}
	}
	ru, err = e.client.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: "user-42"})
	if err != nil || ru.GetRevokedCount() != 0 {
		t.Fatalf("RevokeUserSessions with nothing left = %v, %v", ru, err)
	}
	if n := e.rdb.DBSize(ctx).Val(); n != 0 {
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
		e.clock.Advance(time.Millisecond)
	}
	var got []string
	tok := ""
	for range 10 {
		resp, err := e.client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "pager", PageSize: 2, PageToken: tok})
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
	before := e.rdb.DBSize(callCtx(t)).Val()
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
		{"ttl over max", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", Ttl: d(DefaultConfig.MaxTTL + time.Second)}), "ttl"},
		{"invalid ttl", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", Ttl: &durationpb.Duration{Seconds: 1, Nanos: -5}}), "ttl"},
		{"negative idle", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", IdleTimeout: d(-time.Minute)}), "idle_timeout"},
		{"validate empty token", func(ctx context.Context) error {
			_, err := e.client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{})
			return err
		}, "token"},
		{"validate oversized token", func(ctx context.Context) error {
			_, err := e.client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: long(2000)})
			return err
		}, "token"},
		{"revoke without target", func(ctx context.Context) error {
			_, err := e.client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{})
			return err
		}, "target"},
		{"revoke empty token", func(ctx context.Context) error {
			_, err := e.client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{}})
			return err
		}, "token"},
		{"revoke malformed id", func(ctx context.Context) error {
			_, err := e.client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_SessionId{SessionId: "abc"}})
			return err
		}, "session_id"},
		{"list without user", func(ctx context.Context) error {
			_, err := e.client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{})
			return err
		}, "user_id"},
		{"list negative page size", func(ctx context.Context) error {
			_, err := e.client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "u", PageSize: -1})
			return err
		}, "page_size"},
		{"list page size over max", func(ctx context.Context) error {
			_, err := e.client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "u", PageSize: 201})
			return err
		}, "page_size"},
		{"list bad page token", func(ctx context.Context) error {
			_, err := e.client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "u", PageToken: "!!"})
			return err
		}, "page_token"},
		{"list another user's page token", func(ctx context.Context) error {
			_, err := e.client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "u", PageToken: encodePageToken(other.GetSession().GetSessionId())})
			return err
		}, "page_token"},
		{"revoke-user without user", func(ctx context.Context) error {
			_, err := e.client.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{})
			return err
		}, "user_id"},
		{"revoke-user malformed except", func(ctx context.Context) error {
			_, err := e.client.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: "u", ExceptSessionId: "nope"})
			return err
		}, "except_session_id"},
		{"revoke-user except of another user", func(ctx context.Context) error {
			_, err := e.client.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: "u", ExceptSessionId: other.GetSession().GetSessionId()})
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
	if after := e.rdb.DBSize(callCtx(t)).Val(); after != before {
		t.Fatalf("rejected requests changed Redis: %d keys before, %d after", before, after)
	}
}

func create(e *env, req *sessionauthv1.CreateSessionRequest) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := e.client.CreateSession(ctx, req)
		return err
	}
}

func TestUnauthenticatedIsOneAnswer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := callCtx(t)
	revoked := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken()
	if _, err := e.client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: revoked}}); err != nil {
		t.Fatal(err)
	}
	expired := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u", Ttl: durationpb.New(time.Minute)}).GetToken()
	idle := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u", Ttl: durationpb.New(time.Hour), IdleTimeout: durationpb.New(2 * time.Minute)}).GetToken()
	live := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u", Ttl: durationpb.New(time.Hour), IdleTimeout: durationpb.New(2 * time.Minute)}).GetToken()
	e.clock.Advance(90 * time.Second)
	if _, err := e.client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: live}); err != nil {
		t.Fatalf("live token at 90s: %v", err) // this validation slides its idle expiry
	}
	e.clock.Advance(90 * time.Second)
	unknown := strings.Repeat("A", 72)
	messages := map[string]bool{}
	for name, tok := range map[string]string{
		"unknown": unknown, "malformed": "hello", "revoked": revoked, "expired": expired, "idle": idle, "truncated": revoked[:71],
	} {
		_, err := e.client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: tok})
		messages[wantCode(t, err, codes.Unauthenticated, name).Message()] = true
	}
	if len(messages) != 1 {
		t.Fatalf("different messages for different failures: %v", messages)
	}
	if _, err := e.client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: live}); err != nil {
		t.Fatalf("the session validated within its idle timeout has ended: %v", err)
	}
}

func TestUnavailableWhileRedisIsDownAndRecovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := callCtx(t)
	tok := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken()
	waitHealth(t, e, healthpb.HealthCheckResponse_SERVING)

	e.redis.Stop()
	start := time.Now()
	_, err := e.client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: tok})
	st := wantCode(t, err, codes.Unavailable, "validate with Redis down")
	if strings.Contains(strings.ToLower(st.Message()), "dial") || strings.Contains(st.Message(), "refused") {
		t.Fatalf("Redis error text on the wire: %q", st.Message())
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("failing closed took %v", d)
	}
	_, err = e.client.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "u"})
	wantCode(t, err, codes.Unavailable, "create with Redis down")
	_, err = e.client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "u"})
	wantCode(t, err, codes.Unavailable, "list with Redis down")
	waitHealth(t, e, healthpb.HealthCheckResponse_NOT_SERVING)
	if r, err := e.health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("overall health with Redis down = %v, %v; want SERVING (the process is alive)", r, err)
	}

	e.redis.Restart()
	waitHealth(t, e, healthpb.HealthCheckResponse_SERVING)
	fresh := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken()
	if _, err := e.client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: fresh}); err != nil {
		t.Fatalf("after Redis returned: %v", err)
	}
}

func waitHealth(t *testing.T, e *env, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := e.health.Check(callCtx(t), &healthpb.HealthCheckRequest{Service: ServiceName})
		if err == nil && r.GetStatus() == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("health of %s = %v, %v; want %v", ServiceName, r, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pauseRedis makes the test's Redis stop answering clients for d, as an
// overloaded or partitioned server would.
func pauseRedis(t *testing.T, e *env, d time.Duration) {
	t.Helper()
	if err := e.rdb.Do(callCtx(t), "CLIENT", "PAUSE", d.Milliseconds(), "ALL").Err(); err != nil {
		t.Fatal(err)
	}
}

func TestStoreTimeoutIsUnavailable(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig
	cfg.RequestTimeout = 200 * time.Millisecond
	e := newEnv(t, envOptions{cfg: cfg})
	tok := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken()
	pauseRedis(t, e, 1500*time.Millisecond)
	start := time.Now()
	_, err := e.client.ValidateSession(callCtx(t), &sessionauthv1.ValidateSessionRequest{Token: tok})
	wantCode(t, err, codes.Unavailable, "validate with Redis hung")
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v with a 200ms request timeout", d)
	}
}

func TestClientDeadlineIsDeadlineExceeded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	tok := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken()
	pauseRedis(t, e, 1500*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := e.client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: tok})
	wantCode(t, err, codes.DeadlineExceeded, "validate past the caller's deadline")
}

func TestToStatusNeverUnknown(t *testing.T) {
	t.Parallel()
	logs := &testutil.SyncBuffer{}
	s := New(nil, DefaultConfig, slog.New(slog.NewTextHandler(logs, nil)))
	timedOut, cancel := context.WithTimeoutCause(context.Background(), 0, errStoreTimeout)
	defer cancel()
	callerGone, cancel2 := context.WithTimeout(context.Background(), 0)
	defer cancel2()
	canceled, cancel3 := context.WithCancel(context.Background())
	cancel3()
	secret := errors.New("ERR secret redis detail at 10.1.2.3:6379")
	for _, tc := range []struct {
		ctx  context.Context
		err  error
		want codes.Code
	}{
		{context.Background(), store.ErrNotFound, codes.Unauthenticated},
		{context.Background(), fmt.Errorf("get: %w: %w", store.ErrUnavailable, secret), codes.Unavailable},
		{context.Background(), fmt.Errorf("create: %w", store.ErrConflict), codes.Aborted},
		{timedOut, fmt.Errorf("get: %w", context.DeadlineExceeded), codes.Unavailable},
		{callerGone, fmt.Errorf("get: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{canceled, fmt.Errorf("get: %w", context.Canceled), codes.Canceled},
		{context.Background(), secret, codes.Internal},
	} {
		err := s.toStatus(tc.ctx, tc.err)
		st, _ := status.FromError(err)
		if st.Code() != tc.want {
			t.Errorf("toStatus(%v) = %v, want %v", tc.err, st.Code(), tc.want)
		}
		if strings.Contains(st.Message(), "secret") || strings.Contains(st.Message(), "10.1.2.3") {
			t.Errorf("toStatus(%v) leaks the error text: %q", tc.err, st.Message())
		}
	}
	if !strings.Contains(logs.String(), "secret redis detail") {
		t.Error("the internal error's detail was not logged")
	}
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
			_, err = e.client.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{
				UserId: str(10), Email: str(10), ClientIp: str(6), UserAgent: str(10), Attributes: attrs,
				Ttl: durationpb.New(time.Duration(r.Int64N(int64(2*DefaultConfig.MaxTTL))) - DefaultConfig.MaxTTL/2),
			})
		case 1:
			tok := str(80)
			if r.IntN(2) == 0 {
				b := []byte(valid.GetToken())
				b[r.IntN(len(b))] ^= byte(1 << r.IntN(7))
				tok = string(b)
			}
			_, err = e.client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: tok})
		case 2:
			_, err = e.client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_SessionId{SessionId: str(50)}})
		case 3:
			_, err = e.client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: str(10), PageSize: r.Int32N(300) - 50, PageToken: str(20)})
		case 4:
			_, err = e.client.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: str(10), ExceptSessionId: str(50)})
		}
		switch status.Code(err) {
		case codes.OK, codes.InvalidArgument, codes.Unauthenticated:
		default:
			t.Fatalf("request %d: unexpected %v", i, err)
		}
	}
	if _, err := e.client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: valid.GetToken()}); err != nil {
		t.Fatalf("the server no longer validates a good token: %v", err)
	}
}

// TestLogsNeverHoldTokens runs every RPC with logging at debug level and
// checks that no token, nor any part of its secret, appears in the logs.
func TestLogsNeverHoldTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{storeCfg: store.Config{MaxSessionsPerUser: 2}})
	ctx := callCtx(t)
	var tokens []string
	for range 4 {
		tokens = append(tokens, e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u", Email: "u@example.com"}).GetToken())
	}
	for _, tok := range tokens {
		_, _ = e.client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: tok})
		_, _ = e.client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: tok[:71] + "x"})
	}
	e.clock.Advance(2 * time.Minute)
	_, _ = e.client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: tokens[3]})
	_, _ = e.client.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "u"})
	_, _ = e.client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: tokens[3]}})
	_, _ = e.client.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: "u"})
	e.redis.Stop()
	_, _ = e.client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: tokens[2]})
	logs := e.logs.String()
	if !strings.Contains(logs, "session created") {
		t.Fatalf("debug logs were not captured:\n%s", logs)
	}
	for _, tok := range tokens {
		if strings.Contains(logs, tok[28:]) {
			t.Fatalf("a token appears in the logs")
		}
	}
}

// panicStore panics on every call, as a bug in the store would.
type panicStore struct{ Store }

func TestPanicIsInternalAndServerSurvives(t *testing.T) {
	t.Parallel()
	logs := &testutil.SyncBuffer{}
	svc := New(panicStore{}, DefaultConfig, slog.New(slog.NewTextHandler(logs, nil)))
	c := sessionauthv1.NewSessionAuthorityClient(testutil.Serve(t, NewGRPCServer(svc, health.NewServer(), GRPCOptions{})))
	for range 2 {
		_, err := c.CreateSession(callCtx(t), &sessionauthv1.CreateSessionRequest{UserId: "u"})
		if st := wantCode(t, err, codes.Internal, "create on a panicking store"); st.Message() != "internal error" {
			t.Fatalf("message %q, want the generic one", st.Message())
		}
	}
	if !strings.Contains(logs.String(), "panic in handler") {
		t.Fatalf("the panic was not logged:\n%s", logs)
	}
}

// At info level the cheap logging path logs only what an operator must see.
func TestLogFinishedAtInfoLevel(t *testing.T) {
	t.Parallel()
	logs := &testutil.SyncBuffer{}
	s := New(nil, DefaultConfig, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	ctx := context.Background()
	s.logFinished(ctx, "/sessionauth.v1.SessionAuthority/ValidateSession", time.Now(), nil)
	s.logFinished(ctx, "/sessionauth.v1.SessionAuthority/ValidateSession", time.Now(), status.Error(codes.Unauthenticated, "x"))
	if logs.String() != "" {
		t.Fatalf("routine outcomes were logged at info level: %s", logs)
	}
	s.logFinished(ctx, "/sessionauth.v1.SessionAuthority/CreateSession", time.Now(), status.Error(codes.Unavailable, "session store unavailable"))
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "grpc.code=Unavailable") || !strings.Contains(out, "CreateSession") {
		t.Fatalf("an Unavailable call logged as %q", out)
	}
}
