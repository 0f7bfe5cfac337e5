package gatewaytest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/assurance"
	"github.com/sessiond/sessiond/internal/daemon"
	"github.com/sessiond/sessiond/internal/gatewaytest"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/sessiondtest"
	"github.com/sessiond/sessiond/internal/testutil"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/forwardauth"
)

// loginURL is sessiond's --forward-auth-login-url in these tests.
const loginURL = "https://login.example.com/signin"

// revokeBound is how soon after RevokeSession returns the gateway must
// refuse the session.
const revokeBound = 100 * time.Millisecond

// gateway is a gateway under test, run with the docs' configuration.
type gateway struct {
	// start runs it in front of upstream, asking sessiond's forward-auth
	// listener at forwardAuth (both 127.0.0.1:port).
	start func(t testing.TB, forwardAuth, upstream string) *gatewaytest.Gateway
	// unavailable are the answers it may give when sessiond answers 503.
	unavailable []int
	// passesRetryAfter: it hands sessiond's Retry-After to the client.
	passesRetryAfter bool
	// postLogin is its answer to a browser's POST without a session.
	postLogin int
	// stepUpPage: it sends a browser navigation short of the step-up
	// route's requirement to stepUpURL (302) rather than passing on
	// sessiond's 403.
	stepUpPage bool
}

// stepUpURL is the step-up page of the docs' configurations.
const stepUpURL = "https://login.example.com/step-up"

// env is a gateway in front of an upstream, with a sessiond on a Redis of
// its own behind it.
type env struct {
	redis    *redistest.Server
	client   sessionauthv1.SessionAuthorityClient
	upstream *gatewaytest.Upstream
	gw       *gatewaytest.Gateway
	http     *http.Client
	clock    *testutil.Clock // sessiond's
}

func newEnv(t *testing.T, gw gateway) *env {
	t.Helper()
	rs := redistest.Start(t)
	cfg := sessiondtest.Config(rs.Addr())
	cfg.Service = server.Config{RequestTimeout: time.Second}
	cfg.ForwardAuth = daemon.ForwardAuthConfig{Listen: "127.0.0.1:0", LoginURL: loginURL}
	clock := testutil.NewClock()
	cfg.Clock = clock.Now
	d := sessiondtest.Run(t, cfg)
	up := gatewaytest.NewUpstream(t)
	return &env{
		clock:    clock,
		redis:    rs,
		client:   sessionauthv1.NewSessionAuthorityClient(d.Conn),
		upstream: up,
		gw:       gw.start(t, d.ForwardAuthAddr, up.Addr),
		http: &http.Client{
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// session is a session created for a test.
type session struct{ token, id, user, email string }

func (e *env) create(t *testing.T, user, email string) session {
	t.Helper()
	return e.createLevel(t, user, email, 0)
}

// createLevel creates a session of an assurance level (0: the default, 1).
func (e *env) createLevel(t *testing.T, user, email string, level int32) session {
	t.Helper()
	resp, err := e.client.CreateSession(testutil.CallCtx(t), &sessionauthv1.CreateSessionRequest{UserId: user, Email: email, AssuranceLevel: level})
	if err != nil {
		t.Fatal(err)
	}
	return session{resp.GetToken(), resp.GetSession().GetSessionId(), user, email}
}

// rotate is the login backend's step-up: s rotated with req's level and
// reauthenticated (its token is set here).
func (e *env) rotate(t *testing.T, s session, req *sessionauthv1.RotateSessionRequest) session {
	t.Helper()
	req.Token = s.token
	resp, err := e.client.RotateSession(testutil.CallCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	return session{resp.GetToken(), resp.GetSession().GetSessionId(), s.user, s.email}
}

func (s session) cookie() string {
	return "theme=dark; " + forwardauth.DefaultCookieName + "=" + s.token
}

// do sends a client's request to the gateway: method, the path (with its
// query) and the headers.
func (e *env) do(t *testing.T, method, path string, headers map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testutil.CallCtx(t), method, e.gw.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return resp, string(body)
}

// want checks the gateway's answer to a request for path; reached says
// whether the upstream must have seen it (once) or never.
func (e *env) want(t *testing.T, resp *http.Response, body, path string, code int, reached bool) {
	t.Helper()
	if resp.StatusCode != code {
		t.Errorf("%s: %d %q, want %d", path, resp.StatusCode, body, code)
	}
	if got := len(e.upstream.Seen(path)); reached && (got != 1 || body != gatewaytest.UpstreamBody) {
		t.Errorf("%s: the upstream saw %d requests (answer %q), want 1", path, got, body)
	} else if !reached && (got != 0 || body == gatewaytest.UpstreamBody) {
		t.Errorf("%s: the upstream saw %d requests (answer %q), want none", path, got, body)
	}
}

// wantIdentity checks that the one request for path reached the upstream
// with s's identity headers, each once, and nothing the client made up.
func (e *env) wantIdentity(t *testing.T, path string, s session) {
	t.Helper()
	seen := e.upstream.Seen(path)
	if len(seen) != 1 {
		t.Fatalf("%s: the upstream saw %d requests, want 1", path, len(seen))
	}
	h := seen[0]
	for name, want := range map[string]string{"X-User-Id": s.user, "X-Session-Id": s.id, "X-User-Email": s.email} {
		got := h.Values(name)
		switch {
		case want == "" && (len(got) > 1 || (len(got) == 1 && got[0] != "")):
			t.Errorf("%s: the upstream got %s %q, want none or empty", path, name, got)
		case want != "" && !slices.Equal(got, []string{want}):
			t.Errorf("%s: the upstream got %s %q, want [%q]", path, name, got, want)
		}
	}
}

func browser(h map[string]string) map[string]string {
	out := map[string]string{"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
	for k, v := range h {
		out[k] = v
	}
	return out
}

func api(h map[string]string) map[string]string {
	out := map[string]string{"Accept": "application/json"}
	for k, v := range h {
		out[k] = v
	}
	return out
}

// spoofed is what a client claims about itself.
var spoofed = map[string]string{"X-User-Id": "admin", "X-Session-Id": "spoofed", "X-User-Email": "admin@example.com"}

func with(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// testGateway runs the documented setup's promises on gw.
func testGateway(t *testing.T, gw gateway) {
	t.Run("sessions", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, gw)
		t.Run("no session", func(t *testing.T) { testNoSession(t, e, gw) })
		t.Run("cookie and bearer", func(t *testing.T) { testCookieAndBearer(t, e) })
		t.Run("spoofed identity", func(t *testing.T) { testSpoofedIdentity(t, e) })
		t.Run("revoked", func(t *testing.T) { testRevoked(t, e) })
	})
	t.Run("redis down", func(t *testing.T) {
		t.Parallel()
		testRedisDown(t, newEnv(t, gw), gw)
	})
	t.Run("step-up", func(t *testing.T) {
		t.Parallel()
		testStepUp(t, newEnv(t, gw), gw)
	})
}

// testNoSession: an API call gets 401 with the challenge, a browser
// navigation the login page with the original URL in rd; the upstream
// sees neither.
func testNoSession(t *testing.T, e *env, gw gateway) {
	resp, body := e.do(t, "GET", "/api/orders", api(nil))
	e.want(t, resp, body, "/api/orders", http.StatusUnauthorized, false)
	if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer realm="sessiond"` {
		t.Errorf("401 with WWW-Authenticate %q", got)
	}
	login := func(path string) string { return loginURL + "?rd=" + url.QueryEscape(e.gw.URL+path) }

	resp, body = e.do(t, "GET", "/orders?id=7", browser(nil))
	e.want(t, resp, body, "/orders", http.StatusFound, false)
	if got := resp.Header.Get("Location"); got != login("/orders?id=7") {
		t.Errorf("a browser's GET: Location %q, want %q", got, login("/orders?id=7"))
	}
	resp, body = e.do(t, "POST", "/form", browser(nil))
	e.want(t, resp, body, "/form", gw.postLogin, false)
	if got := resp.Header.Get("Location"); got != login("/form") {
		t.Errorf("a browser's POST: Location %q, want %q", got, login("/form"))
	}
	resp, body = e.do(t, "GET", "/bad-cookie", browser(map[string]string{"Cookie": forwardauth.DefaultCookieName + "=nope"}))
	e.want(t, resp, body, "/bad-cookie", http.StatusFound, false)
	// With an Authorization header it is an API call, even from a browser.
	resp, body = e.do(t, "GET", "/bad-bearer", browser(map[string]string{"Authorization": "Bearer nope"}))
	e.want(t, resp, body, "/bad-bearer", http.StatusUnauthorized, false)
}

// testCookieAndBearer: a live session, in the cookie or as a bearer token,
// reaches the upstream with its identity.
func testCookieAndBearer(t *testing.T, e *env) {
	s := e.create(t, "user-1", "user-1@example.com")
	resp, body := e.do(t, "GET", "/cookie", browser(map[string]string{"Cookie": s.cookie()}))
	e.want(t, resp, body, "/cookie", http.StatusOK, true)
	e.wantIdentity(t, "/cookie", s)
	resp, body = e.do(t, "GET", "/bearer", api(map[string]string{"Authorization": "Bearer " + s.token}))
	e.want(t, resp, body, "/bearer", http.StatusOK, true)
	e.wantIdentity(t, "/bearer", s)
}

// testSpoofedIdentity: what a client says about itself never reaches the
// upstream: with a live session it is replaced (also the email of a session
// that has none), without one the request goes nowhere.
func testSpoofedIdentity(t *testing.T, e *env) {
	s := e.create(t, "user-2", "user-2@example.com")
	resp, body := e.do(t, "GET", "/spoofed-cookie", with(spoofed, map[string]string{"Cookie": s.cookie()}))
	e.want(t, resp, body, "/spoofed-cookie", http.StatusOK, true)
	e.wantIdentity(t, "/spoofed-cookie", s)
	resp, body = e.do(t, "GET", "/spoofed-bearer", with(spoofed, map[string]string{"Authorization": "Bearer " + s.token}))
	e.want(t, resp, body, "/spoofed-bearer", http.StatusOK, true)
	e.wantIdentity(t, "/spoofed-bearer", s)

	noEmail := e.create(t, "user-3", "")
	resp, body = e.do(t, "GET", "/spoofed-no-email", with(spoofed, map[string]string{"Cookie": noEmail.cookie()}))
	e.want(t, resp, body, "/spoofed-no-email", http.StatusOK, true)
	e.wantIdentity(t, "/spoofed-no-email", noEmail)

	resp, body = e.do(t, "GET", "/spoofed-alone", api(spoofed))
	e.want(t, resp, body, "/spoofed-alone", http.StatusUnauthorized, false)
	resp, body = e.do(t, "GET", "/spoofed-alone-browser", browser(spoofed))
	e.want(t, resp, body, "/spoofed-alone-browser", http.StatusFound, false)
	resp, body = e.do(t, "GET", "/spoofed-bad-cookie", api(with(spoofed, map[string]string{"Cookie": forwardauth.DefaultCookieName + "=nope"})))
	e.want(t, resp, body, "/spoofed-bad-cookie", http.StatusUnauthorized, false)
}

// testRevoked: once RevokeSession has returned, the gateway refuses the
// session within revokeBound.
func testRevoked(t *testing.T, e *env) {
	s := e.create(t, "user-4", "user-4@example.com")
	resp, body := e.do(t, "GET", "/before-revoke", api(map[string]string{"Cookie": s.cookie()}))
	e.want(t, resp, body, "/before-revoke", http.StatusOK, true)
	if _, err := e.client.RevokeSession(testutil.CallCtx(t), &sessionauthv1.RevokeSessionRequest{
		Target: &sessionauthv1.RevokeSessionRequest_Token{Token: s.token},
	}); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	deadline := revoked.Add(5 * time.Second)
	var polls int
	for {
		polls++
		resp, body = e.do(t, "GET", "/after-revoke", api(map[string]string{"Cookie": s.cookie()}))
		if resp.StatusCode == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the revoked session still gets %d %q after 5s", resp.StatusCode, body)
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(revoked)
	t.Logf("refused %v after the revoke (%d requests)", took, polls)
	if took > revokeBound {
		t.Errorf("the revoked session was refused only %v after the revoke, want within %v", took, revokeBound)
	}
	// RevokeSession returns once Redis has it: no request after that passes.
	if n := len(e.upstream.Seen("/after-revoke")); n != 0 {
		t.Errorf("the upstream got %d requests of the revoked session after the revoke returned", n)
	}
}

// testRedisDown: with Redis stopped the gateway refuses every request (the
// upstream sees none); when Redis is back (empty: the sessions are gone) a
// new session passes again.
func testRedisDown(t *testing.T, e *env, gw gateway) {
	s := e.create(t, "user-5", "user-5@example.com")
	resp, body := e.do(t, "GET", "/before-outage", api(map[string]string{"Cookie": s.cookie()}))
	e.want(t, resp, body, "/before-outage", http.StatusOK, true)

	e.redis.Stop()
	resp, body = e.do(t, "GET", "/outage", api(map[string]string{"Cookie": s.cookie()}))
	if !slices.Contains(gw.unavailable, resp.StatusCode) {
		t.Errorf("with Redis down: %d %q, want one of %v", resp.StatusCode, body, gw.unavailable)
	}
	if gw.passesRetryAfter && resp.Header.Get("Retry-After") == "" {
		t.Errorf("with Redis down: no Retry-After in %v", resp.Header)
	}
	if n := len(e.upstream.Seen("/outage")); n != 0 || body == gatewaytest.UpstreamBody {
		t.Errorf("with Redis down, the upstream saw %d requests", n)
	}
	resp, body = e.do(t, "GET", "/outage-browser", browser(map[string]string{"Cookie": s.cookie()}))
	if !slices.Contains(gw.unavailable, resp.StatusCode) || len(e.upstream.Seen("/outage-browser")) != 0 {
		t.Errorf("a browser with Redis down: %d %q (the upstream saw %d), want one of %v",
			resp.StatusCode, body, len(e.upstream.Seen("/outage-browser")), gw.unavailable)
	}

	e.redis.Restart()
	var fresh session
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := e.client.CreateSession(testutil.CallCtx(t), &sessionauthv1.CreateSessionRequest{UserId: "user-5", Email: "user-5@example.com"})
		if err == nil {
			fresh = session{resp.GetToken(), resp.GetSession().GetSessionId(), "user-5", "user-5@example.com"}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no CreateSession within 10s of Redis' return: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, body = e.do(t, "GET", "/after-outage", api(map[string]string{"Cookie": fresh.cookie()}))
	e.want(t, resp, body, "/after-outage", http.StatusOK, true)
	e.wantIdentity(t, "/after-outage", fresh)
	resp, body = e.do(t, "GET", "/after-outage-old", api(map[string]string{"Cookie": s.cookie()}))
	e.want(t, resp, body, "/after-outage-old", http.StatusUnauthorized, false)
}

// testStepUp: the docs' step-up route (/admin/: assurance level 2 and an
// authentication within 15 minutes) lets only a session that meets it
// through, denies the others with 403 and the reason (or, for a browser,
// the step-up page where the gateway sends it there), and after the login
// backend's step-up (RotateSession) the new token passes. The other paths
// ask nothing more than a live session, and the client's own query changes
// neither.
func testStepUp(t *testing.T, e *env, gw gateway) {
	low := e.createLevel(t, "user-6", "user-6@example.com", 1)
	high := e.createLevel(t, "user-7", "user-7@example.com", 2)

	for _, tc := range []struct {
		path string
		s    session
	}{{"/orders-low", low}, {"/orders-high", high}, {"/admin/high", high}} {
		resp, body := e.do(t, "GET", tc.path, api(map[string]string{"Cookie": tc.s.cookie()}))
		e.want(t, resp, body, tc.path, http.StatusOK, true)
		e.wantIdentity(t, tc.path, tc.s)
	}
	resp, body := e.do(t, "GET", "/admin/high-bearer", with(spoofed, api(map[string]string{"Authorization": "Bearer " + high.token})))
	e.want(t, resp, body, "/admin/high-bearer", http.StatusOK, true)
	e.wantIdentity(t, "/admin/high-bearer", high)

	// Short of the level: 403 with the reason, the upstream sees nothing.
	e.wantShort(t, "/admin/low", api(map[string]string{"Cookie": low.cookie()}), assurance.ReasonLevelTooLow)
	e.wantShort(t, "/admin/low-bearer", api(map[string]string{"Authorization": "Bearer " + low.token}), assurance.ReasonLevelTooLow)
	resp, body = e.do(t, "GET", "/admin", api(map[string]string{"Cookie": low.cookie()})) // nginx: 301 to /admin/
	if resp.StatusCode == http.StatusOK || len(e.upstream.Seen("/admin")) != 0 {
		t.Errorf("/admin with a level-1 session: %d %q, the upstream saw %d requests", resp.StatusCode, body, len(e.upstream.Seen("/admin")))
	}
	// A browser: the step-up page with the reason, or sessiond's 403.
	resp, body = e.do(t, "GET", "/admin/low-browser?x=1", browser(map[string]string{"Cookie": low.cookie()}))
	if gw.stepUpPage {
		e.want(t, resp, body, "/admin/low-browser", http.StatusFound, false)
		want := stepUpURL + "?reason=" + assurance.ReasonLevelTooLow + "&rd=" + e.gw.URL + "/admin/low-browser?x=1"
		if got := resp.Header.Get("Location"); got != want {
			t.Errorf("a browser short of the level: Location %q, want %q", got, want)
		}
	} else {
		e.want(t, resp, body, "/admin/low-browser", http.StatusForbidden, false)
		wantReason(t, resp, body, assurance.ReasonLevelTooLow, "a browser short of the level")
	}
	// No session on the step-up route is still 401 (and a browser's
	// navigation the login page).
	resp, body = e.do(t, "GET", "/admin/none", api(nil))
	e.want(t, resp, body, "/admin/none", http.StatusUnauthorized, false)
	if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer realm="sessiond"` {
		t.Errorf("no session on the step-up route: WWW-Authenticate %q", got)
	}
	resp, body = e.do(t, "GET", "/admin/none-browser", browser(nil))
	e.want(t, resp, body, "/admin/none-browser", http.StatusFound, false)
	if got, want := resp.Header.Get("Location"), loginURL+"?rd="+url.QueryEscape(e.gw.URL+"/admin/none-browser"); got != want {
		t.Errorf("no session on the step-up route, a browser: Location %q, want %q", got, want)
	}

	// The client's query never reaches sessiond: it neither lowers the
	// step-up route's requirement nor raises the others'.
	e.wantShort(t, "/admin/low-query?min_assurance_level=0&max_auth_age=0", api(map[string]string{"Cookie": low.cookie()}), assurance.ReasonLevelTooLow)
	e.wantShort(t, "/admin/low-query-bad?min_assurance_level=x", api(map[string]string{"Cookie": low.cookie()}), assurance.ReasonLevelTooLow)
	for i, q := range []string{"min_assurance_level=3", "max_auth_age=1s", "min_assurance_level=nonsense"} {
		path := "/orders-query-" + strconv.Itoa(i)
		resp, body = e.do(t, "GET", path+"?"+q, api(map[string]string{"Cookie": low.cookie()}))
		e.want(t, resp, body, path, http.StatusOK, true)
	}

	// 16 minutes on, the level-2 session's authentication is too old for
	// the step-up route, and still good for the others.
	e.clock.Advance(16 * time.Minute)
	e.wantShort(t, "/admin/high-late", api(map[string]string{"Cookie": high.cookie()}), assurance.ReasonReauthenticationRequired)
	resp, body = e.do(t, "GET", "/orders-high-late", api(map[string]string{"Cookie": high.cookie()}))
	e.want(t, resp, body, "/orders-high-late", http.StatusOK, true)

	// The login backend's step-up: the rotated sessions pass.
	reauthenticated := e.rotate(t, high, &sessionauthv1.RotateSessionRequest{Reauthenticated: true})
	resp, body = e.do(t, "GET", "/admin/reauthenticated", api(map[string]string{"Cookie": reauthenticated.cookie()}))
	e.want(t, resp, body, "/admin/reauthenticated", http.StatusOK, true)
	e.wantIdentity(t, "/admin/reauthenticated", reauthenticated)
	steppedUp := e.rotate(t, low, &sessionauthv1.RotateSessionRequest{AssuranceLevel: 2, Reauthenticated: true})
	resp, body = e.do(t, "GET", "/admin/stepped-up", browser(map[string]string{"Cookie": steppedUp.cookie()}))
	e.want(t, resp, body, "/admin/stepped-up", http.StatusOK, true)
	e.wantIdentity(t, "/admin/stepped-up", steppedUp)
}

// wantShort checks the gateway's 403 for a live session short of the step-up
// route's requirement: the reason in Sessiond-Reason and a JSON body, and
// the upstream never sees the request.
func (e *env) wantShort(t *testing.T, path string, headers map[string]string, reason string) {
	t.Helper()
	resp, body := e.do(t, "GET", path, headers)
	p, _, _ := strings.Cut(path, "?")
	e.want(t, resp, body, p, http.StatusForbidden, false)
	wantReason(t, resp, body, reason, path)
}

func wantReason(t *testing.T, resp *http.Response, body, reason, what string) {
	t.Helper()
	if got := resp.Header.Get(assurance.HTTPHeader); got != reason {
		t.Errorf("%s: %s %q, want %q", what, assurance.HTTPHeader, got, reason)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var b assurance.Body
	if err := json.Unmarshal([]byte(body), &b); err != nil || b.Error != reason {
		t.Errorf("%s: body %q, want JSON with \"error\": %q", what, body, reason)
	}
	if resp.Header.Get("X-User-Id") != "" {
		t.Errorf("%s: a 403 with X-User-Id %q", what, resp.Header.Get("X-User-Id"))
	}
}

func TestSubstitute(t *testing.T) {
	t.Parallel()
	got := gatewaytest.Substitute(t, "a 127.0.0.1:9091 b 127.0.0.1:8080", "127.0.0.1:9091", "127.0.0.1:8080", "127.0.0.1:8080", "x")
	if want := "a 127.0.0.1:8080 b x"; got != want {
		t.Errorf("Substitute: %q, want %q (one pass)", got, want)
	}
	if !strings.Contains(gatewaytest.DocsFile(t, "nginx.conf"), "auth_request") {
		t.Error("DocsFile did not read docs/gateways/nginx.conf")
	}
}

// TestGatewaysPageShowsTheTestedFiles: docs/gateways.md shows the files
// these tests run, as they are.
func TestGatewaysPageShowsTheTestedFiles(t *testing.T) {
	t.Parallel()
	page, err := os.ReadFile(filepath.Join("..", "..", "docs", "gateways.md"))
	if err != nil {
		t.Fatal(err)
	}
	for file, fence := range map[string]string{"nginx.conf": "```nginx\n", "Caddyfile": "```caddy\n"} {
		if !strings.Contains(string(page), fence+gatewaytest.DocsFile(t, file)+"```\n") {
			t.Errorf("docs/gateways.md does not show docs/gateways/%s as it is (in a %q block)", file, strings.TrimSpace(fence))
		}
	}
}
