package server

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	"google.golang.org/protobuf/types/known/durationpb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/credential"
	"github.com/sessiond/sessiond/internal/testutil"
	"github.com/sessiond/sessiond/server/store"
)

// checkReq is the CheckRequest Envoy's ext_authz HTTP filter sends for a
// request with these (lowercase) headers.
func checkReq(headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Id: "req-1", Method: "GET", Path: "/orders", Host: "app.example.com", Protocol: "HTTP/1.1", Headers: headers},
	}}}
}

func (e *env) check(t *testing.T, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	resp, err := e.authz.Check(callCtx(t), req)
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

// wantDenied checks a deny decision: its rpc code, HTTP status, a body, and
// the header the client needs.
func wantDenied(t *testing.T, resp *authv3.CheckResponse, code codes.Code, httpCode typev3.StatusCode, header, value, what string) {
	t.Helper()
	d := resp.GetDeniedResponse()
	if got := codes.Code(resp.GetStatus().GetCode()); got != code || d == nil {
		t.Fatalf("%s: rpc status %v %q (ok_response %v), want %v and a denied response", what, got, resp.GetStatus().GetMessage(), resp.GetOkResponse(), code)
	}
	if d.GetStatus().GetCode() != httpCode {
		t.Errorf("%s: HTTP %v, want %v", what, d.GetStatus().GetCode(), httpCode)
	}
	if d.GetBody() == "" {
		t.Errorf("%s: no body", what)
	}
	if header == "" {
		return
	}
	for _, h := range d.GetHeaders() {
		if h.GetHeader().GetKey() == header {
			if h.GetHeader().GetValue() != value {
				t.Errorf("%s: %s: %q, want %q", what, header, h.GetHeader().GetValue(), value)
			}
			return
		}
	}
	t.Errorf("%s: no %s header in %v", what, header, d.GetHeaders())
}

func TestExtAuthzAllowsBearer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{extAuthz: &ExtAuthzConfig{}})
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
	e := newEnv(t, envOptions{extAuthz: &ExtAuthzConfig{}})
	created := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "user-7"})
	sid, tok := created.GetSession().GetSessionId(), created.GetToken()
	for _, tc := range []struct {
		name string
		req  map[string]string
		want map[string]string
	}{
		{"among other cookies",
			map[string]string{"cookie": "theme=dark; session=" + tok + "; lang=en", "x-user-id": "admin"},
			map[string]string{"cookie": "theme=dark; lang=en", "x-session-id": sid, "x-user-id": "user-7"}},
		{"the only cookie, quoted",
			map[string]string{"cookie": `session="` + tok + `"`},
			map[string]string{"x-session-id": sid, "x-user-id": "user-7"}},
		{"next to another scheme's Authorization, which is kept",
			map[string]string{"cookie": "session=" + tok + ";a=1", "authorization": "Basic dXNlcjpwYXNz"},
			map[string]string{"cookie": "a=1", "authorization": "Basic dXNlcjpwYXNz", "x-session-id": sid, "x-user-id": "user-7"}},
		{"behind a Bearer header, which wins; the cookie is stripped as well",
			map[string]string{"cookie": "session=stale; b=2", "authorization": "Bearer " + tok},
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
	e := newEnv(t, envOptions{extAuthz: &ExtAuthzConfig{}})
	created := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "raw"})
	req := checkReq(nil)
	req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "cookie", RawValue: []byte("a=1")},
		{Key: "cookie", RawValue: []byte("session=" + created.GetToken())},
		{Key: "x-user-id", RawValue: []byte("admin")},
	}}
	resp := e.check(t, req)
	got := upstream(t, map[string]string{"cookie": "a=1; session=" + created.GetToken()}, resp)
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
	e := newEnv(t, envOptions{extAuthz: &ExtAuthzConfig{CookieName: "__Host-sid", SessionIDHeader: "x-auth-session", UserIDHeader: "x-auth-user"}})
	created := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "user-9"})
	req := map[string]string{"cookie": "session=not-ours; __Host-sid=" + created.GetToken(), "x-auth-user": "admin", "x-user-id": "left-alone"}
	got := upstream(t, req, e.check(t, checkReq(req)))
	want := map[string]string{"cookie": "session=not-ours", "x-auth-session": created.GetSession().GetSessionId(), "x-auth-user": "user-9", "x-user-id": "left-alone"}
	if !maps.Equal(got, want) {
		t.Fatalf("upstream receives %v, want %v", got, want)
	}
	// The default cookie name is not a credential here.
	wantDenied(t, e.check(t, checkReq(map[string]string{"cookie": "session=" + created.GetToken()})),
		codes.Unauthenticated, typev3.StatusCode_Unauthorized, "www-authenticate", `Bearer realm="sessiond"`, "the default cookie name")
}

func TestExtAuthzDeniesWithout401(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{extAuthz: &ExtAuthzConfig{}})
	ctx := callCtx(t)
	revoked := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken()
	if _, err := e.client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: revoked}}); err != nil {
		t.Fatal(err)
	}
	expired := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u", Ttl: durationpb.New(time.Minute)}).GetToken()
	live := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken()
	e.clock.Advance(2 * time.Minute)
	before := e.rdb.DBSize(ctx).Val()
	for name, headers := range map[string]map[string]string{
		"no headers":               nil,
		"no credential":            {"accept": "*/*", "x-user-id": "admin"},
		"another scheme":           {"authorization": "Basic dXNlcjpwYXNz"},
		"empty bearer":             {"authorization": "Bearer "},
		"garbage bearer":           {"authorization": "Bearer hello"},
		"garbage cookie":           {"cookie": "session=hello"},
		"empty cookie":             {"cookie": "session=; a=1"},
		"other cookies only":       {"cookie": "a=" + live},
		"revoked":                  {"authorization": "Bearer " + revoked},
		"expired":                  {"cookie": "session=" + expired},
		"truncated":                {"authorization": "Bearer " + live[:71]},
		"oversized":                {"authorization": "Bearer " + strings.Repeat(live, 100)},
		"bearer wins over cookie":  {"authorization": "Bearer " + revoked, "cookie": "session=" + live},
		"token without the scheme": {"authorization": live},
	} {
		wantDenied(t, e.check(t, checkReq(headers)), codes.Unauthenticated, typev3.StatusCode_Unauthorized, "www-authenticate", `Bearer realm="sessiond"`, name)
	}
	if after := e.rdb.DBSize(ctx).Val(); after != before {
		t.Fatalf("denied checks changed Redis: %d keys before, %d after", before, after)
	}
	// The live one is still allowed after all that.
	upstream(t, nil, e.check(t, checkReq(map[string]string{"authorization": "Bearer " + live})))
}

// TestExtAuthzSlidesIdleTimeout: Check validates as ValidateSession does, so
// a request through the gateway keeps the session alive.
func TestExtAuthzSlidesIdleTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{extAuthz: &ExtAuthzConfig{}})
	tok := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u", Ttl: durationpb.New(time.Hour), IdleTimeout: durationpb.New(2 * time.Minute)}).GetToken()
	req := checkReq(map[string]string{"authorization": "Bearer " + tok})
	for range 3 {
		e.clock.Advance(90 * time.Second)
		upstream(t, nil, e.check(t, req))
	}
	e.clock.Advance(3 * time.Minute)
	wantDenied(t, e.check(t, req), codes.Unauthenticated, typev3.StatusCode_Unauthorized, "www-authenticate", `Bearer realm="sessiond"`, "idle")
}

func TestExtAuthzRedisDownIs503(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{extAuthz: &ExtAuthzConfig{}})
	tok := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken()
	e.redis.Stop()
	start := time.Now()
	resp := e.check(t, checkReq(map[string]string{"authorization": "Bearer " + tok}))
	wantDenied(t, resp, codes.Unavailable, typev3.StatusCode_ServiceUnavailable, "retry-after", "1", "Redis stopped")
	if m := resp.GetStatus().GetMessage(); strings.Contains(m, "refused") || strings.Contains(strings.ToLower(m), "dial") {
		t.Fatalf("Redis error text in the rpc status: %q", m)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("failing closed took %v", d)
	}
	// No token is still a 401: nothing to ask Redis about.
	wantDenied(t, e.check(t, checkReq(nil)), codes.Unauthenticated, typev3.StatusCode_Unauthorized, "www-authenticate", `Bearer realm="sessiond"`, "no token, Redis stopped")
}

func TestExtAuthzStoreTimeoutIs503(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig
	cfg.RequestTimeout = 200 * time.Millisecond
	e := newEnv(t, envOptions{cfg: cfg, extAuthz: &ExtAuthzConfig{}})
	tok := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken()
	pauseRedis(t, e, 1500*time.Millisecond)
	start := time.Now()
	wantDenied(t, e.check(t, checkReq(map[string]string{"cookie": "session=" + tok})),
		codes.Unavailable, typev3.StatusCode_ServiceUnavailable, "retry-after", "1", "Redis hung")
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v with a 200ms request timeout", d)
	}
}

// errStore fails every read with an error that is none of the store's.
type errStore struct{ Store }

func (errStore) Get(context.Context, string) (*store.Session, error) {
	return nil, errors.New("ERR secret redis detail at 10.1.2.3:6379")
}

func TestExtAuthzInternalErrorIs500(t *testing.T) {
	t.Parallel()
	logs := &testutil.SyncBuffer{}
	svc := New(errStore{}, DefaultConfig, slog.New(slog.NewTextHandler(logs, nil)))
	conn := testutil.Serve(t, NewGRPCServer(svc, health.NewServer(), GRPCOptions{ExtAuthz: &ExtAuthzConfig{}}))
	e := &env{authz: authv3.NewAuthorizationClient(conn)}
	resp := e.check(t, checkReq(map[string]string{"authorization": "Bearer " + strings.Repeat("A", 72)}))
	wantDenied(t, resp, codes.Internal, typev3.StatusCode_InternalServerError, "", "", "store fault")
	if s := resp.String(); strings.Contains(s, "secret") || strings.Contains(s, "10.1.2.3") {
		t.Fatalf("the error text is in the response: %v", resp)
	}
	if !strings.Contains(logs.String(), "secret redis detail") {
		t.Fatalf("the internal error was not logged:\n%s", logs)
	}
}

func TestExtAuthzRequestWithoutHTTPIsInvalidArgument(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{extAuthz: &ExtAuthzConfig{}})
	for _, req := range []*authv3.CheckRequest{{}, {Attributes: &authv3.AttributeContext{}}} {
		_, err := e.authz.Check(callCtx(t), req)
		wantCode(t, err, codes.InvalidArgument, "Check without attributes.request.http")
	}
}

func TestExtAuthzNotRegisteredByDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	_, err := e.authz.Check(callCtx(t), checkReq(nil))
	wantCode(t, err, codes.Unimplemented, "Check without GRPCOptions.ExtAuthz")
}

// TestExtAuthzLogsNeverHoldTokens runs allowed and denied checks with
// logging at debug level and checks that no token appears in the logs.
func TestExtAuthzLogsNeverHoldTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{extAuthz: &ExtAuthzConfig{}})
	ctx := callCtx(t)
	var tokens []string
	for range 3 {
		tokens = append(tokens, e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken())
	}
	e.check(t, checkReq(map[string]string{"authorization": "Bearer " + tokens[0]}))
	e.check(t, checkReq(map[string]string{"cookie": "a=1; session=" + tokens[1]}))
	e.check(t, checkReq(map[string]string{"authorization": "Bearer " + tokens[1][:71] + "x"}))
	if _, err := e.client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: tokens[0]}}); err != nil {
		t.Fatal(err)
	}
	e.check(t, checkReq(map[string]string{"authorization": "Bearer " + tokens[0]}))
	e.clock.Advance(2 * time.Minute)
	e.check(t, checkReq(map[string]string{"cookie": "session=" + tokens[1]})) // a touch
	e.redis.Stop()
	e.check(t, checkReq(map[string]string{"cookie": "session=" + tokens[2]}))
	logs := e.logs.String()
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

func TestFindCredential(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		authorization, cookie string
		want                  foundCredential
	}{
		{"", "", foundCredential{}},
		{"Bearer abc", "", foundCredential{"abc", fromAuthorization}},
		{"bEaReR   abc \t", "", foundCredential{"abc", fromAuthorization}},
		{"  Bearer abc", "", foundCredential{"abc", fromAuthorization}},
		{"Bearer", "", foundCredential{}},
		{"Bearer ", "session=xyz", foundCredential{"xyz", fromCookie}},
		{"Bearerabc", "", foundCredential{}},
		{"Basic abc", "session=xyz", foundCredential{"xyz", fromCookie}},
		{"Bearer abc", "session=xyz", foundCredential{"abc", fromAuthorization}},
		{"", "a=1;session=xyz;b=2", foundCredential{"xyz", fromCookie}},
		{"", ` session = "xyz" `, foundCredential{"xyz", fromCookie}},
		{"", "session=first; session=second", foundCredential{"first", fromCookie}},
		{"", "Session=xyz", foundCredential{}},
		{"", "xsession=xyz; session", foundCredential{}},
		{"", "session=", foundCredential{}},
		{"", "session=a=b", foundCredential{"a=b", fromCookie}},
	} {
		if got := findCredential(tc.authorization, tc.cookie, "session"); got != tc.want {
			t.Errorf("findCredential(%q, %q) = %+v, want %+v", tc.authorization, tc.cookie, got, tc.want)
		}
	}
}

func TestWithoutCookie(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                                  "",
		"session=x":                         "",
		"a=1; session=x; b=2":               "a=1; b=2",
		"a=1;session=x;b=2":                 "a=1; b=2",
		"session=x; a=1; session=y; ; b=2 ": "a=1; b=2",
		"sessionx=1; xsession=2; Session=3": "sessionx=1; xsession=2; Session=3",
		"session; a=1":                      "a=1",
	} {
		if got := credential.WithoutCookie(in, "session"); got != want {
			t.Errorf("credential.WithoutCookie(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidNames(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"x-session-id": true, "x-user-id": true, "x_user.id~1": true,
		"": false, "X-User-Id": false, "x user": false, "x:y": false, ":authority": false, "x-ü": false,
		"authorization": false, "cookie": false, "host": false, "content-length": false, "connection": false,
	} {
		if got := ValidHeaderName(name); got != want {
			t.Errorf("ValidHeaderName(%q) = %v, want %v", name, got, want)
		}
	}
	for name, want := range map[string]bool{
		"session": true, "__Host-sid": true, "SID": true,
		"": false, "a b": false, "a=b": false, "a;b": false, `"q"`: false, "a,b": false,
	} {
		if got := credential.ValidCookieName(name); got != want {
			t.Errorf("ValidCookieName(%q) = %v, want %v", name, got, want)
		}
	}
}

// FuzzExtAuthzToken checks that credential extraction never panics, that what
// it returns is what the header holds, and that the rewritten Cookie header
// never carries the session cookie.
func FuzzExtAuthzToken(f *testing.F) {
	f.Add("Bearer AW2JSqMBoinNatxzwoE6bj3HKvOkExjlhyb3Qi_XdxdnXOp3MSNVt3jT3tlnPSddnQONjHDK", "")
	f.Add("", "theme=dark; session=AW2JSqMBoinNatxzwoE6bj3HKvOkExjlhyb3Qi_XdxdnXOp3MSNVt3jT3tlnPSddnQONjHDK; lang=en")
	f.Add("Basic dXNlcjpwYXNz", `session="abc"`)
	f.Add("bearer\t x", "session;session=;=session; session =y")
	const name = "session"
	f.Fuzz(func(t *testing.T, authorization, cookie string) {
		c := findCredential(authorization, cookie, name)
		switch c.source {
		case fromAuthorization:
			tok, ok := credential.FromAuthorization(authorization, "Bearer")
			if !ok || tok != c.token || c.token == "" || strings.Trim(c.token, " \t") != c.token {
				t.Fatalf("bearer token %q from %q", c.token, authorization)
			}
		case fromCookie:
			if _, ok := credential.FromAuthorization(authorization, "Bearer"); ok {
				t.Fatalf("the cookie won over the Bearer header %q", authorization)
			}
			if v, ok := credential.CookieValue(cookie, name); !ok || v != c.token || c.token == "" || strings.Contains(c.token, ";") {
				t.Fatalf("cookie token %q from %q", c.token, cookie)
			}
		default:
			if c.token != "" {
				t.Fatalf("a token %q without a source", c.token)
			}
		}
		rest := credential.WithoutCookie(cookie, name)
		if _, found := credential.CookieValue(rest, name); found {
			t.Fatalf("credential.WithoutCookie(%q) = %q still has the cookie", cookie, rest)
		}
		if again := credential.WithoutCookie(rest, name); again != rest {
			t.Fatalf("withoutCookie is not idempotent: %q, then %q", rest, again)
		}
		if len(rest) > len(cookie)+2*strings.Count(cookie, ";") {
			t.Fatalf("credential.WithoutCookie(%q) = %q grew", cookie, rest)
		}
		if slices.Contains(strings.Split(rest, "; "), "") && rest != "" {
			t.Fatalf("credential.WithoutCookie(%q) = %q has an empty pair", cookie, rest)
		}
	})
}
