package forwardauth_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/daemon"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/sessiondtest"
	"github.com/sessiond/sessiond/internal/testutil"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/forwardauth"
)

// env is a sessiond with its forward-auth listener on a real Redis.
type env struct {
	base   string // http://127.0.0.1:port
	client sessionauthv1.SessionAuthorityClient
	redis  *redistest.Server
	d      *sessiondtest.Sessiond
	clock  *testutil.Clock // sessiond's
}

func newEnv(t *testing.T, loginURL string, svc server.Config, more ...func(*daemon.Config)) *env {
	t.Helper()
	rs := redistest.Start(t)
	cfg := sessiondtest.Config(rs.Addr())
	cfg.Service = svc
	cfg.ForwardAuth = daemon.ForwardAuthConfig{Listen: "127.0.0.1:0", LoginURL: loginURL}
	for _, f := range more {
		f(&cfg)
	}
	clock := testutil.NewClock()
	cfg.Clock = clock.Now
	d := sessiondtest.Run(t, cfg)
	return &env{base: "http://" + d.ForwardAuthAddr, client: sessionauthv1.NewSessionAuthorityClient(d.Conn), redis: rs, d: d, clock: clock}
}

func (e *env) create(t *testing.T, user string) (token, sessionID string) {
	t.Helper()
	resp, err := e.client.CreateSession(testutil.CallCtx(t), &sessionauthv1.CreateSessionRequest{UserId: user, Email: user + "@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetToken(), resp.GetSession().GetSessionId()
}

// ask sends a gateway's authorization request: path, and the headers the
// gateway sends.
func (e *env) ask(t *testing.T, method, path string, headers map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(testutil.CallCtx(t), method, e.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if h := req.Header.Get("Host"); h != "" { // the Host line, not a header
		req.Host = h
		req.Header.Del("Host")
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

func cookie(tok string) string { return "theme=dark; " + forwardauth.DefaultCookieName + "=" + tok }

// The exact headers each gateway sends, per its documentation.
func nginx(h map[string]string) map[string]string {
	out := map[string]string{"X-Original-URL": "https://app.example.com/orders?id=7", "X-Original-Method": "GET"}
	for k, v := range h {
		out[k] = v
	}
	return out
}

// ingressNginx is what ingress-nginx's auth-url subrequest carries.
func ingressNginx(h map[string]string) map[string]string {
	out := map[string]string{"X-Original-URL": "https://app.example.com/orders?id=7", "X-Original-Method": "GET",
		"X-Sent-From": "nginx-ingress-controller", "X-Real-IP": "203.0.113.9", "X-Forwarded-For": "203.0.113.9",
		"X-Auth-Request-Redirect": "/orders?id=7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example.com"}
	for k, v := range h {
		out[k] = v
	}
	return out
}

// envoyHTTP is what Envoy's ext_authz HTTP service sends with the docs'
// allowed_headers (cookie; authorization always): the original method and
// Host, Content-Length 0 without a body, and Envoy's own headers; the path
// is path_prefix + the original path and query.
func envoyHTTP(h map[string]string) map[string]string {
	out := map[string]string{"Host": "app.example.com", "Content-Length": "0", "X-Forwarded-For": "203.0.113.9",
		"X-Forwarded-Proto": "https", "X-Envoy-Internal": "true", "X-Envoy-Expected-Rq-Timeout-Ms": "1000", "X-Request-Id": "7b1e"}
	for k, v := range h {
		out[k] = v
	}
	return out
}

func traefik(method string, h map[string]string) map[string]string {
	out := map[string]string{"X-Forwarded-Method": method, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example.com",
		"X-Forwarded-Uri": "/orders?id=7", "X-Forwarded-For": "203.0.113.9"}
	for k, v := range h {
		out[k] = v
	}
	return out
}

func wantStatus(t *testing.T, resp *http.Response, code int, what string) {
	t.Helper()
	if resp.StatusCode != code {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: %d %q, want %d", what, resp.StatusCode, body, code)
	}
}

func wantIdentity(t *testing.T, resp *http.Response, user, sessionID, what string) {
	t.Helper()
	wantStatus(t, resp, http.StatusOK, what)
	if got := resp.Header.Get("X-User-Id"); got != user {
		t.Errorf("%s: x-user-id %q, want %q", what, got, user)
	}
	if got := resp.Header.Get("X-Session-Id"); got != sessionID {
		t.Errorf("%s: x-session-id %q, want %q", what, got, sessionID)
	}
	if got := resp.Header.Get("X-User-Email"); got != user+"@example.com" {
		t.Errorf("%s: x-user-email %q", what, got)
	}
}

func TestEveryGatewayProtocol(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", server.Config{})
	tok, sid := e.create(t, "user-1")
	for name, tc := range map[string]struct {
		method, path string
		headers      map[string]string
	}{
		"nginx cookie":               {"GET", forwardauth.AuthRequestPath, nginx(map[string]string{"Cookie": cookie(tok)})},
		"nginx bearer":               {"GET", forwardauth.AuthRequestPath, nginx(map[string]string{"Authorization": "Bearer " + tok})},
		"traefik cookie":             {"GET", forwardauth.ForwardAuthPath, traefik("GET", map[string]string{"Cookie": cookie(tok)})},
		"caddy bearer":               {"GET", forwardauth.ForwardAuthPath, traefik("POST", map[string]string{"Authorization": "Bearer " + tok})},
		"envoy http (cookie)":        {"POST", forwardauth.ExtAuthzPrefix + "orders/7", map[string]string{"Cookie": cookie(tok)}},
		"envoy http (bearer)":        {"GET", forwardauth.ExtAuthzPrefix, map[string]string{"Authorization": "Bearer " + tok}},
		"spoofed identity too":       {"GET", forwardauth.AuthRequestPath, nginx(map[string]string{"Cookie": cookie(tok), "X-User-Id": "admin", "X-Session-Id": "x"})},
		"ingress-nginx cookie":       {"GET", forwardauth.AuthRequestPath, ingressNginx(map[string]string{"Cookie": cookie(tok)})},
		"envoy http, its exact POST": {"POST", forwardauth.ExtAuthzPrefix + "orders/7?id=7", envoyHTTP(map[string]string{"Cookie": cookie(tok)})},
		"envoy http, the root path":  {"GET", forwardauth.ExtAuthzPrefix, envoyHTTP(map[string]string{"Authorization": "Bearer " + tok})},
	} {
		wantIdentity(t, e.ask(t, tc.method, tc.path, tc.headers), "user-1", sid, name)
	}
	for name, tc := range map[string]struct {
		path    string
		headers map[string]string
	}{
		"nginx, no token":                  {forwardauth.AuthRequestPath, nginx(nil)},
		"nginx, spoofed identity only":     {forwardauth.AuthRequestPath, nginx(map[string]string{"X-User-Id": "admin"})},
		"traefik, bad cookie":              {forwardauth.ForwardAuthPath, traefik("GET", map[string]string{"Cookie": cookie("nope")})},
		"envoy, a token of the wrong form": {forwardauth.ExtAuthzPrefix + "x", map[string]string{"Authorization": "Bearer " + testutil.Tampered(tok)}},
	} {
		resp := e.ask(t, "GET", tc.path, tc.headers)
		wantStatus(t, resp, http.StatusUnauthorized, name)
		if resp.Header.Get("WWW-Authenticate") != `Bearer realm="sessiond"` || resp.Header.Get("X-User-Id") != "" {
			t.Errorf("%s: headers %v", name, resp.Header)
		}
		if body, _ := io.ReadAll(resp.Body); strings.Contains(string(body), tok) {
			t.Errorf("%s: the body holds the token", name)
		}
	}

	// A session without an email: every 200 still carries all three
	// headers (the email empty), so that a gateway copying them replaces
	// what the client sent and never passes on a placeholder of its own
	// (Caddy 2.6's copy_headers) or the client's value.
	noEmail, err := e.client.CreateSession(testutil.CallCtx(t), &sessionauthv1.CreateSessionRequest{UserId: "user-2"})
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ method, path string }{
		"nginx": {"GET", forwardauth.AuthRequestPath}, "traefik": {"GET", forwardauth.ForwardAuthPath}, "envoy http": {"GET", forwardauth.ExtAuthzPrefix},
	} {
		resp := e.ask(t, tc.method, tc.path, map[string]string{"Cookie": cookie(noEmail.GetToken()), "X-User-Email": "admin@example.com"})
		wantStatus(t, resp, http.StatusOK, name+" without an email")
		if got, ok := resp.Header["X-User-Email"]; !ok || len(got) != 1 || got[0] != "" {
			t.Errorf("%s without an email: x-user-email %q (present: %v), want one empty value", name, got, ok)
		}
		if got := resp.Header.Get("X-User-Id"); got != "user-2" {
			t.Errorf("%s without an email: x-user-id %q", name, got)
		}
	}

	// A revoked session is refused at once.
	if _, err := e.client.RevokeSession(testutil.CallCtx(t), &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: tok}}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, e.ask(t, "GET", forwardauth.AuthRequestPath, nginx(map[string]string{"Cookie": cookie(tok)})), http.StatusUnauthorized, "revoked")
}

// TestLoginRedirects: with a login URL, a browser navigation without a live
// session is sent there with the original URL in rd; an API call gets 401.
func TestLoginRedirects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "https://login.example.com/signin", server.Config{})
	browser := map[string]string{"Accept": "text/html,application/xhtml+xml"}
	want := "https://login.example.com/signin?rd=" + url.QueryEscape("https://app.example.com/orders?id=7")

	resp := e.ask(t, "GET", forwardauth.ForwardAuthPath, traefik("GET", browser))
	wantStatus(t, resp, http.StatusFound, "Traefik, a browser GET")
	if got := resp.Header.Get("Location"); got != want {
		t.Errorf("Location %q, want %q", got, want)
	}
	resp = e.ask(t, "GET", forwardauth.ForwardAuthPath, traefik("POST", browser))
	wantStatus(t, resp, http.StatusSeeOther, "Traefik, a browser POST")
	api := traefik("GET", map[string]string{"Accept": "application/json"})
	wantStatus(t, e.ask(t, "GET", forwardauth.ForwardAuthPath, api), http.StatusUnauthorized, "Traefik, an API call")
	withAuth := traefik("GET", map[string]string{"Accept": "text/html", "Authorization": "Bearer nope"})
	wantStatus(t, e.ask(t, "GET", forwardauth.ForwardAuthPath, withAuth), http.StatusUnauthorized, "Traefik, a call with Authorization")

	// nginx: 401 (all auth_request understands) with the Location for
	// auth_request_set + error_page.
	resp = e.ask(t, "GET", forwardauth.AuthRequestPath, nginx(browser))
	wantStatus(t, resp, http.StatusUnauthorized, "nginx, a browser GET")
	if got := resp.Header.Get("Location"); got != want {
		t.Errorf("nginx Location %q, want %q", got, want)
	}
	// ingress-nginx: the same 401 (its auth-signin annotation, not the
	// Location, sends the browser to the login page).
	wantStatus(t, e.ask(t, "GET", forwardauth.AuthRequestPath, ingressNginx(browser)), http.StatusUnauthorized, "ingress-nginx, a browser GET")
	// Envoy's HTTP service: no redirect on this endpoint, even for a
	// browser: 401 with the challenge.
	resp = e.ask(t, "GET", forwardauth.ExtAuthzPrefix+"orders?id=7", envoyHTTP(browser))
	wantStatus(t, resp, http.StatusUnauthorized, "Envoy HTTP, a browser GET")
	if resp.Header.Get("Location") != "" || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("Envoy HTTP, a browser GET: headers %v", resp.Header)
	}
	// The rd comes only from the gateway's headers, encoded; a forged
	// X-Original-URL of another scheme gives no redirect.
	resp = e.ask(t, "GET", forwardauth.AuthRequestPath, map[string]string{"Accept": "text/html", "X-Original-URL": "javascript:alert(1)"})
	if resp.Header.Get("Location") != "" {
		t.Errorf("a javascript: original URL became a redirect: %q", resp.Header.Get("Location"))
	}
}

// TestFailsClosed: Redis stopped, every endpoint answers 503 with
// Retry-After, and serves again when Redis returns.
func TestFailsClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", server.Config{RequestTimeout: time.Second})
	tok, sid := e.create(t, "user-1")
	e.redis.Stop()
	for _, p := range []string{forwardauth.AuthRequestPath, forwardauth.ForwardAuthPath, forwardauth.ExtAuthzPrefix} {
		resp := e.ask(t, "GET", p, map[string]string{"Cookie": cookie(tok)})
		wantStatus(t, resp, http.StatusServiceUnavailable, p+" with Redis down")
		if resp.Header.Get("Retry-After") == "" || resp.Header.Get("X-User-Id") != "" {
			t.Errorf("%s with Redis down: headers %v", p, resp.Header)
		}
	}
	e.redis.Restart() // without persistence: the sessions are gone, a new one is needed
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := e.client.CreateSession(testutil.CallCtx(t), &sessionauthv1.CreateSessionRequest{UserId: "user-1", Email: "user-1@example.com"})
		if err == nil {
			tok, sid = resp.GetToken(), resp.GetSession().GetSessionId()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no create within 10s of Redis' return: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantIdentity(t, e.ask(t, "GET", forwardauth.AuthRequestPath, map[string]string{"Cookie": cookie(tok)}), "user-1", sid, "after Redis returned")
}

// TestHungRedisAnswersWithinRequestTimeout: with Redis frozen (it holds
// its connections but answers nothing), every endpoint answers 503 once
// --request-timeout has passed, as a gRPC validation does, and not when
// the longer socket timeout (--redis-timeout) would give up.
func TestHungRedisAnswersWithinRequestTimeout(t *testing.T) {
	t.Parallel()
	const requestTimeout = 300 * time.Millisecond
	e := newEnv(t, "", server.Config{RequestTimeout: requestTimeout}, func(cfg *daemon.Config) { cfg.Redis.Timeout = time.Minute })
	tok, _ := e.create(t, "user-1")
	e.redis.Freeze()
	t.Cleanup(e.redis.Thaw)
	for _, p := range []string{forwardauth.AuthRequestPath, forwardauth.ForwardAuthPath, forwardauth.ExtAuthzPrefix} {
		start := time.Now()
		resp := e.ask(t, "GET", p, map[string]string{"Cookie": cookie(tok)})
		wantStatus(t, resp, http.StatusServiceUnavailable, p+" with Redis frozen")
		if d := time.Since(start); d < requestTimeout || d > requestTimeout+3*time.Second {
			t.Errorf("%s: answered after %v with a %v request timeout", p, d, requestTimeout)
		}
	}
}

// TestOneClientCannotLockOutTheGateway: behind a trusted proxy, failures
// count per forwarded client address: an attacker flooding bad cookies is
// throttled alone (429; nginx: 503, since auth_request knows no 429), the
// others' bad cookies are still 401 and good cookies 200.
func TestOneClientCannotLockOutTheGateway(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", server.Config{
		FailedValidationLimit:          server.RateLimit{PerSecond: 1, Burst: 50},
		FailedValidationPerClientLimit: server.RateLimit{PerSecond: 1, Burst: 3},
	})
	tok, sid := e.create(t, "user-1")
	from := func(ip string, h map[string]string) map[string]string {
		h["X-Forwarded-For"] = "198.51.100.1, " + ip // the last entry is the gateway's client
		return h
	}
	for range 3 {
		wantStatus(t, e.ask(t, "GET", forwardauth.ForwardAuthPath, from("203.0.113.66", map[string]string{"Cookie": cookie("nope")})), http.StatusUnauthorized, "the attacker's failure")
	}
	resp := e.ask(t, "GET", forwardauth.ForwardAuthPath, from("203.0.113.66", map[string]string{"Cookie": cookie("nope")}))
	wantStatus(t, resp, http.StatusTooManyRequests, "the attacker over its share")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	wantStatus(t, e.ask(t, "GET", forwardauth.AuthRequestPath, from("203.0.113.66", map[string]string{"Cookie": cookie("nope")})), http.StatusServiceUnavailable, "the attacker through nginx")
	wantIdentity(t, e.ask(t, "GET", forwardauth.ForwardAuthPath, from("203.0.113.66", map[string]string{"Cookie": cookie(tok)})), "user-1", sid, "a good cookie from the attacker's address")
	wantStatus(t, e.ask(t, "GET", forwardauth.ForwardAuthPath, from("203.0.113.7", map[string]string{"Cookie": cookie("nope")})), http.StatusUnauthorized, "another client's failure")
}

// TestMetrics: the forward-auth requests are counted by endpoint and
// outcome on /metrics.
func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", server.Config{})
	tok, _ := e.create(t, "user-1")
	e.ask(t, "GET", forwardauth.AuthRequestPath, map[string]string{"Cookie": cookie(tok)})
	e.ask(t, "GET", forwardauth.ForwardAuthPath, nil)
	e.ask(t, "GET", forwardauth.ForwardAuthPath+"?min_assurance_level=2", map[string]string{"Cookie": cookie(tok)})
	e.ask(t, "GET", forwardauth.ExtAuthzPrefix, map[string]string{"Cookie": cookie(tok), forwardauth.MinLevelHeader: "3"})
	e.ask(t, "GET", forwardauth.ExtAuthzPrefix, map[string]string{"Cookie": cookie(tok), forwardauth.MinLevelHeader: "x"})
	resp, err := http.Get("http://" + e.d.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`sessiond_forward_auth_requests_total{endpoint="auth-request",outcome="allowed"} 1`,
		`sessiond_forward_auth_requests_total{endpoint="forward-auth",outcome="unauthenticated"} 1`,
		`sessiond_forward_auth_requests_total{endpoint="forward-auth",outcome="forbidden"} 1`,
		`sessiond_forward_auth_requests_total{endpoint="ext-authz",outcome="forbidden"} 1`,
		`sessiond_forward_auth_requests_total{endpoint="ext-authz",outcome="error"} 1`,
		`sessiond_forward_auth_requests_total{endpoint="ext-authz",outcome="allowed"} 0`,
		`sessiond_forward_auth_requests_total{endpoint="auth-request",outcome="forbidden"} 0`,
		`sessiond_forward_auth_request_duration_seconds_count{endpoint="auth-request"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestDebugLogs: at debug level each decision is logged with its endpoint
// and the session, never the token; at info level (production's) none is.
func TestDebugLogs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", server.Config{})
	tok, id := e.create(t, "user-1")
	e.ask(t, "GET", forwardauth.AuthRequestPath, map[string]string{"Cookie": cookie(tok)})
	e.ask(t, "GET", forwardauth.ForwardAuthPath, nil)
	e.ask(t, "GET", forwardauth.ExtAuthzPrefix, map[string]string{"Cookie": cookie(tok), forwardauth.MinLevelHeader: "3"})
	logs := e.d.Logs.String()
	for _, want := range []string{
		`msg="forward auth allowed" endpoint=auth-request session_id=` + id + " user_id=user-1",
		`msg="forward auth denied: no session token" endpoint=forward-auth`,
		`msg="forward auth denied: the session falls short of the route's requirement" endpoint=ext-authz session_id=` + id,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the logs lack %s:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, tok[28:]) {
		t.Error("a token appears in the logs")
	}

	var infoLogs testutil.SyncBuffer
	info := newEnv(t, "", server.Config{}, func(c *daemon.Config) {
		c.Log = daemon.LogConfig{Output: &infoLogs, Level: slog.LevelInfo}
	})
	tok, _ = info.create(t, "user-1")
	info.ask(t, "GET", forwardauth.AuthRequestPath, map[string]string{"Cookie": cookie(tok)})
	info.ask(t, "GET", forwardauth.ForwardAuthPath, nil)
	if logs := infoLogs.String(); !strings.Contains(logs, "sessiond serving") || strings.Contains(logs, "forward auth") {
		t.Errorf("at info level, the logs should hold the start and no decision:\n%s", logs)
	}
}
