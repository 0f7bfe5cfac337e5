package extauthz_test

import (
	"maps"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/sessiondtest"
	"github.com/sessiond/sessiond/internal/testutil"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/extauthz"
)

type (
	env        struct{ *sessiondtest.Env }
	envOptions = sessiondtest.EnvOptions
)

func newEnv(t *testing.T, o envOptions) *env { return &env{sessiondtest.NewEnv(t, o)} }

func (e *env) create(t *testing.T, req *sessionauthv1.CreateSessionRequest) *sessionauthv1.CreateSessionResponse {
	t.Helper()
	return e.Create(t, req)
}

var (
	checkReq = testutil.CheckRequest
	callCtx  = testutil.CallCtx
	wantCode = testutil.WantCode
)

func (e *env) check(t *testing.T, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	resp, err := e.Authz.Check(callCtx(t), req)
	if err != nil {
		t.Fatalf("Check returned the gRPC error %v; the decision belongs in the response", err)
	}
	return resp
}

// upstream applies an allowed CheckResponse to the request's headers as Envoy
// does (headers set, then headers_to_remove) and returns the headers the
// upstream receives. Every header must be set with OVERWRITE_IF_EXISTS_OR_ADD,
// or a client could add its own value next to sessiond's.
func upstream(t *testing.T, headers map[string]string, resp *authv3.CheckResponse) map[string]string {
	t.Helper()
	if c := codes.Code(resp.GetStatus().GetCode()); c != codes.OK || resp.GetOkResponse() == nil {
		t.Fatalf("denied (%v %q, HTTP %v), want allowed", c, resp.GetStatus().GetMessage(), resp.GetDeniedResponse().GetStatus().GetCode())
	}
	out := map[string]string{}
	maps.Copy(out, headers)
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Fatalf("header %q set with %v, want OVERWRITE_IF_EXISTS_OR_ADD", h.GetHeader().GetKey(), h.GetAppendAction())
		}
		out[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	for _, k := range resp.GetOkResponse().GetHeadersToRemove() {
		delete(out, k)
	}
	return out
}

var wantDenied = testutil.WantDenied

func TestExtAuthzAllowsBearer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{ExtAuthz: &extauthz.Config{}})
	created := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "user-42"})
	sid := created.GetSession().GetSessionId()
	for _, scheme := range []string{"Bearer", "bearer", "BEARER"} {
		req := map[string]string{
			"authorization": scheme + " " + created.GetToken(),
			"x-user-id":     "admin", // spoofed by the client
			"x-session-id":  "someone-elses",
			"accept":        "application/json",
		}
		got := upstream(t, req, e.check(t, checkReq(req)))
		want := map[string]string{"x-session-id": sid, "x-user-id": "user-42", "accept": "application/json"}
		if !maps.Equal(got, want) {
			t.Fatalf("%s: upstream receives %v, want %v", scheme, got, want)
		}
	}
}

func TestExtAuthzAllowsCookie(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{ExtAuthz: &extauthz.Config{}})
	created := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "user-7"})
	sid, tok := created.GetSession().GetSessionId(), created.GetToken()
	for _, tc := range []struct {
		name string
		req  map[string]string
		want map[string]string
	}{
		{"among other cookies",
			map[string]string{"cookie": "theme=dark; __Host-session=" + tok + "; lang=en", "x-user-id": "admin"},
			map[string]string{"cookie": "theme=dark; lang=en", "x-session-id": sid, "x-user-id": "user-7"}},
		{"the only cookie, quoted",
			map[string]string{"cookie": `__Host-session="` + tok + `"`},
			map[string]string{"x-session-id": sid, "x-user-id": "user-7"}},
		{"next to another scheme's Authorization, which is kept",
			map[string]string{"cookie": "__Host-session=" + tok + ";a=1", "authorization": "Basic dXNlcjpwYXNz"},
			map[string]string{"cookie": "a=1", "authorization": "Basic dXNlcjpwYXNz", "x-session-id": sid, "x-user-id": "user-7"}},
		{"behind a Bearer header, which wins; the cookie is stripped as well",
			map[string]string{"cookie": "__Host-session=stale; b=2", "authorization": "Bearer " + tok},
			map[string]string{"cookie": "b=2", "x-session-id": sid, "x-user-id": "user-7"}},
	} {
		if got := upstream(t, tc.req, e.check(t, checkReq(tc.req))); !maps.Equal(got, tc.want) {
			t.Errorf("%s: upstream receives %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestExtAuthzRawHeaderMap: with encode_raw_headers Envoy sends header_map,
// one entry per header line with the value in raw_value.
func TestExtAuthzRawHeaderMap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{ExtAuthz: &extauthz.Config{}})
	created := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "raw"})
	req := checkReq(nil)
	req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "cookie", RawValue: []byte("a=1")},
		{Key: "cookie", RawValue: []byte("__Host-session=" + created.GetToken())},
		{Key: "x-user-id", RawValue: []byte("admin")},
	}}
	resp := e.check(t, req)
	got := upstream(t, map[string]string{"cookie": "a=1; __Host-session=" + created.GetToken()}, resp)
	want := map[string]string{"cookie": "a=1", "x-session-id": created.GetSession().GetSessionId(), "x-user-id": "raw"}
	if !maps.Equal(got, want) {
		t.Fatalf("upstream receives %v, want %v", got, want)
	}

	// Two Authorization lines are one malformed credential, never a choice.
	req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "authorization", RawValue: []byte("Bearer " + created.GetToken())},
		{Key: "Authorization", RawValue: []byte("Bearer " + created.GetToken())},
	}}
	wantDenied(t, e.check(t, req), codes.Unauthenticated, typev3.StatusCode_Unauthorized, "www-authenticate", `Bearer realm="sessiond"`, "two authorization lines")
}

func TestExtAuthzHeaderNamesAreConfigurable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{ExtAuthz: &extauthz.Config{CookieName: "__Host-sid", SessionIDHeader: "x-auth-session", UserIDHeader: "x-auth-user"}})
	created := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "user-9"})
	req := map[string]string{"cookie": "__Host-session=not-ours; __Host-sid=" + created.GetToken(), "x-auth-user": "admin", "x-user-id": "left-alone"}
	got := upstream(t, req, e.check(t, checkReq(req)))
	want := map[string]string{"cookie": "__Host-session=not-ours", "x-auth-session": created.GetSession().GetSessionId(), "x-auth-user": "user-9", "x-user-id": "left-alone"}
	if !maps.Equal(got, want) {
		t.Fatalf("upstream receives %v, want %v", got, want)
	}
	// The default cookie name is not a credential here.
	wantDenied(t, e.check(t, checkReq(map[string]string{"cookie": "__Host-session=" + created.GetToken()})),
		codes.Unauthenticated, typev3.StatusCode_Unauthorized, "www-authenticate", `Bearer realm="sessiond"`, "the default cookie name")
}

func TestExtAuthzDeniesWithout401(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{ExtAuthz: &extauthz.Config{}})
	ctx := callCtx(t)
	revoked := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken()
	if _, err := e.Client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: revoked}}); err != nil {
		t.Fatal(err)
	}
	expired := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u", Ttl: durationpb.New(time.Minute)}).GetToken()
	live := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken()
	e.Clock.Advance(2 * time.Minute)
	before := e.RDB.DBSize(ctx).Val()
	for name, headers := range map[string]map[string]string{
		"no headers":               nil,
		"no credential":            {"accept": "*/*", "x-user-id": "admin"},
		"another scheme":           {"authorization": "Basic dXNlcjpwYXNz"},
		"empty bearer":             {"authorization": "Bearer "},
		"garbage bearer":           {"authorization": "Bearer hello"},
		"garbage cookie":           {"cookie": "__Host-session=hello"},
		"empty cookie":             {"cookie": "__Host-session=; a=1"},
		"other cookies only":       {"cookie": "a=" + live},
		"revoked":                  {"authorization": "Bearer " + revoked},
		"expired":                  {"cookie": "__Host-session=" + expired},
		"truncated":                {"authorization": "Bearer " + live[:71]},
		"oversized":                {"authorization": "Bearer " + strings.Repeat(live, 100)},
		"bearer wins over cookie":  {"authorization": "Bearer " + revoked, "cookie": "__Host-session=" + live},
		"token without the scheme": {"authorization": live},
	} {
		wantDenied(t, e.check(t, checkReq(headers)), codes.Unauthenticated, typev3.StatusCode_Unauthorized, "www-authenticate", `Bearer realm="sessiond"`, name)
	}
	if after := e.RDB.DBSize(ctx).Val(); after != before {
		t.Fatalf("denied checks changed Redis: %d keys before, %d after", before, after)
	}
	// The live one is still allowed after all that.
	upstream(t, nil, e.check(t, checkReq(map[string]string{"authorization": "Bearer " + live})))
}

// TestExtAuthzSlidesIdleTimeout: Check validates as ValidateSession does, so
// a request through the gateway keeps the session alive.
func TestExtAuthzSlidesIdleTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{ExtAuthz: &extauthz.Config{}})
	tok := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u", Ttl: durationpb.New(time.Hour), IdleTimeout: durationpb.New(2 * time.Minute)}).GetToken()
	req := checkReq(map[string]string{"authorization": "Bearer " + tok})
	for range 3 {
		e.Clock.Advance(90 * time.Second)
		upstream(t, nil, e.check(t, req))
	}
	e.Clock.Advance(3 * time.Minute)
	wantDenied(t, e.check(t, req), codes.Unauthenticated, typev3.StatusCode_Unauthorized, "www-authenticate", `Bearer realm="sessiond"`, "idle")
}

func TestExtAuthzRedisDownIs503(t *testing.T) {
	t.Parallel()
	// Explicit: with Redis stopped one read can spend a while in go-redis'
	// dial retries; the request timeout is what bounds it.
	const requestTimeout = time.Second
	e := newEnv(t, envOptions{Service: server.Config{RequestTimeout: requestTimeout}, ExtAuthz: &extauthz.Config{}})
	tok := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken()
	e.Redis.Stop()
	start := time.Now()
	resp := e.check(t, checkReq(map[string]string{"authorization": "Bearer " + tok}))
	wantDenied(t, resp, codes.Unavailable, typev3.StatusCode_ServiceUnavailable, "retry-after", "1", "Redis stopped")
	if m := resp.GetStatus().GetMessage(); strings.Contains(m, "refused") || strings.Contains(strings.ToLower(m), "dial") {
		t.Fatalf("Redis error text in the rpc status: %q", m)
	}
	if d := time.Since(start); d >= requestTimeout+time.Second {
		t.Fatalf("failing closed took %v with a %v request timeout", d, requestTimeout)
	}
	// No token is still a 401: nothing to ask Redis about.
	wantDenied(t, e.check(t, checkReq(nil)), codes.Unauthenticated, typev3.StatusCode_Unauthorized, "www-authenticate", `Bearer realm="sessiond"`, "no token, Redis stopped")
}

func TestExtAuthzStoreTimeoutIs503(t *testing.T) {
	t.Parallel()
	cfg := server.Config{}
	cfg.RequestTimeout = 200 * time.Millisecond
	e := newEnv(t, envOptions{Service: cfg, ExtAuthz: &extauthz.Config{}})
	tok := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken()
	e.PauseRedis(t, 5*time.Second) // longer than the test: Redis is stopped at its end, paused or not
	start := time.Now()
	wantDenied(t, e.check(t, checkReq(map[string]string{"cookie": "__Host-session=" + tok})),
		codes.Unavailable, typev3.StatusCode_ServiceUnavailable, "retry-after", "1", "Redis hung")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v with a 200ms request timeout", d)
	}
}

func TestExtAuthzRequestWithoutHTTPIsInvalidArgument(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{ExtAuthz: &extauthz.Config{}})
	for _, req := range []*authv3.CheckRequest{{}, {Attributes: &authv3.AttributeContext{}}} {
		_, err := e.Authz.Check(callCtx(t), req)
		wantCode(t, err, codes.InvalidArgument, "Check without attributes.request.http")
	}
}

func TestExtAuthzNotRegisteredByDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	_, err := e.Authz.Check(callCtx(t), checkReq(nil))
	wantCode(t, err, codes.Unimplemented, "Check without GRPCOptions.ExtAuthz")
}

// TestExtAuthzLogsNeverHoldTokens runs allowed and denied checks with
// logging at debug level and checks that no token appears in the logs.
func TestExtAuthzLogsNeverHoldTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{ExtAuthz: &extauthz.Config{}})
	ctx := callCtx(t)
	var tokens []string
	for range 3 {
		tokens = append(tokens, e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken())
	}
	e.check(t, checkReq(map[string]string{"authorization": "Bearer " + tokens[0]}))
	e.check(t, checkReq(map[string]string{"cookie": "a=1; __Host-session=" + tokens[1]}))
	e.check(t, checkReq(map[string]string{"authorization": "Bearer " + testutil.Tampered(tokens[1])}))
	if _, err := e.Client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: tokens[0]}}); err != nil {
		t.Fatal(err)
	}
	e.check(t, checkReq(map[string]string{"authorization": "Bearer " + tokens[0]}))
	e.Clock.Advance(2 * time.Minute)
	e.check(t, checkReq(map[string]string{"cookie": "__Host-session=" + tokens[1]})) // a touch
	e.Redis.Stop()
	e.check(t, checkReq(map[string]string{"cookie": "__Host-session=" + tokens[2]}))
	logs := e.Logs.String()
	for _, want := range []string{"ext_authz allowed", "ext_authz denied", "session store unavailable"} {
		if !strings.Contains(logs, want) {
			t.Fatalf("the logs lack %q:\n%s", want, logs)
		}
	}
	for _, tok := range tokens {
		if strings.Contains(logs, tok[28:]) {
			t.Fatal("a token appears in the logs")
		}
	}
}
