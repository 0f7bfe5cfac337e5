package forwardauth_test

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/assurance"
	"github.com/sessiond/sessiond/internal/testutil"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/forwardauth"
)

// route is one gateway's authorization request for a route with a
// requirement: the path (with the endpoint's query) and the headers the
// gateway sends, the credential not yet among them.
type route struct {
	name, method, path string
	headers            map[string]string
}

// routes are the requests of every gateway for a route whose requirement is
// query (the raw query of the endpoint's URL, as nginx's proxy_pass,
// Caddy's uri and Traefik's address hold it) or, for Envoy's HTTP service,
// the headers envoy (its authorization_request.headers_to_add). A browser's
// Accept is on every one of them: a 403 is never a redirect.
func routes(query string, envoy map[string]string) []route {
	accept := map[string]string{"Accept": "text/html,application/xhtml+xml"}
	envoyHeaders := envoyHTTP(accept)
	maps.Copy(envoyHeaders, envoy)
	return []route{
		{"nginx", "GET", forwardauth.AuthRequestPath + "?" + query, nginx(accept)},
		{"ingress-nginx", "GET", forwardauth.AuthRequestPath + "?" + query, ingressNginx(accept)},
		{"traefik", "GET", forwardauth.ForwardAuthPath + "?" + query, traefik("GET", accept)},
		{"caddy, a POST", "GET", forwardauth.ForwardAuthPath + "?" + query, traefik("POST", accept)},
		// The path and query are the client's: the requirement is in the
		// headers only.
		{"envoy http", "POST", forwardauth.ExtAuthzPrefix + "orders/7?id=7", envoyHeaders},
	}
}

func (e *env) askRoute(t *testing.T, r route, cred map[string]string) *http.Response {
	t.Helper()
	h := maps.Clone(r.headers)
	maps.Copy(h, cred)
	return e.ask(t, r.method, r.path, h)
}

func (e *env) createLevel(t *testing.T, user string, level int32) (token, sessionID string) {
	t.Helper()
	resp, err := e.client.CreateSession(testutil.CallCtx(t), &sessionauthv1.CreateSessionRequest{UserId: user, Email: user + "@example.com", AssuranceLevel: level})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetToken(), resp.GetSession().GetSessionId()
}

func (e *env) rotate(t *testing.T, req *sessionauthv1.RotateSessionRequest) (token, sessionID string) {
	t.Helper()
	resp, err := e.client.RotateSession(testutil.CallCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetToken(), resp.GetSession().GetSessionId()
}

// wantShort checks the 403 of a live session short of the requirement: the
// reason in Sessiond-Reason, the JSON body with the ErrorInfo's metadata, no
// identity, no redirect.
func wantShort(t *testing.T, resp *http.Response, reason string, metadata map[string]string, what string) {
	t.Helper()
	wantStatus(t, resp, http.StatusForbidden, what)
	if got := resp.Header.Get(assurance.HTTPHeader); got != reason {
		t.Errorf("%s: %s %q, want %q", what, assurance.HTTPHeader, got, reason)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("%s: Content-Type %q", what, got)
	}
	for _, h := range []string{"X-User-Id", "X-Session-Id", "X-User-Email", "Location", "WWW-Authenticate"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("%s: a 403 with %s %q", what, h, v)
		}
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("%s: Cache-Control %q", what, got)
	}
	body, _ := io.ReadAll(resp.Body)
	var b assurance.Body
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("%s: body %q: %v", what, body, err)
	}
	if b.Error != reason || b.Message == "" || !maps.Equal(b.Metadata, metadata) {
		t.Errorf("%s: body %+v, want error %q and metadata %v", what, b, reason, metadata)
	}
}

// TestStepUp: each gateway's request for a route that needs assurance level
// 2 and an authentication within 5 minutes: a session that meets it is
// allowed with its identity, one short of it gets 403 with the reason (the
// session stays live), no token still 401, and the login backend's step-up
// (RotateSession) makes a token that passes.
func TestStepUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "https://login.example.com/signin", server.Config{})
	lowTok, lowID := e.createLevel(t, "user-low", 1)
	highTok, highID := e.createLevel(t, "user-high", 2)
	envoy := map[string]string{forwardauth.MinLevelHeader: "2", forwardauth.MaxAuthAgeHeader: "5m"}
	levelMD := map[string]string{"required_assurance_level": "2", "assurance_level": "1"}

	for _, maxAge := range []string{"300s", "5m", "300"} {
		envoy[forwardauth.MaxAuthAgeHeader] = maxAge
		for _, r := range routes("min_assurance_level=2&max_auth_age="+maxAge, envoy) {
			what := r.name + ", max_auth_age=" + maxAge
			wantIdentity(t, e.askRoute(t, r, map[string]string{"Cookie": cookie(highTok)}), "user-high", highID, what+", level 2")
			wantIdentity(t, e.askRoute(t, r, map[string]string{"Authorization": "Bearer " + highTok, "X-User-Id": "admin"}), "user-high", highID, what+", level 2, bearer")
			wantShort(t, e.askRoute(t, r, map[string]string{"Cookie": cookie(lowTok)}), assurance.ReasonLevelTooLow, levelMD, what+", level 1")
			resp := e.askRoute(t, r, map[string]string{"Accept": "application/json"}) // a browser's: the login page
			wantStatus(t, resp, http.StatusUnauthorized, what+", no token")
			if resp.Header.Get(assurance.HTTPHeader) != "" {
				t.Errorf("%s, no token: a 401 with %s", what, assurance.HTTPHeader)
			}
		}
	}
	// The level alone, and the age alone.
	for _, r := range routes("min_assurance_level=2", map[string]string{forwardauth.MinLevelHeader: "2"}) {
		wantShort(t, e.askRoute(t, r, map[string]string{"Cookie": cookie(lowTok)}), assurance.ReasonLevelTooLow, levelMD, r.name+", the level alone")
	}
	for _, r := range routes("max_auth_age=5m", map[string]string{forwardauth.MaxAuthAgeHeader: "5m"}) {
		wantIdentity(t, e.askRoute(t, r, map[string]string{"Cookie": cookie(lowTok)}), "user-low", lowID, r.name+", the age alone")
	}
	// Envoy's path and query are the client's: never a requirement.
	wantIdentity(t, e.ask(t, "GET", forwardauth.ExtAuthzPrefix+"orders?min_assurance_level=3&max_auth_age=x", envoyHTTP(map[string]string{"Cookie": cookie(lowTok)})),
		"user-low", lowID, "envoy http, the client's query")
	// Other parameters are not sessiond's; "0" asks nothing.
	wantIdentity(t, e.ask(t, "GET", forwardauth.AuthRequestPath+"?tenant=a&min_assurance_level=0&max_auth_age=0", nginx(map[string]string{"Cookie": cookie(lowTok)})),
		"user-low", lowID, "nginx, min_assurance_level=0")

	// Six minutes on, the level-2 session's authentication is too old; the
	// session itself is live (the route without a requirement allows it).
	e.clock.Advance(6 * time.Minute)
	envoy[forwardauth.MaxAuthAgeHeader] = "5m"
	for _, r := range routes("min_assurance_level=2&max_auth_age=5m", envoy) {
		resp := e.askRoute(t, r, map[string]string{"Cookie": cookie(highTok)})
		wantStatus(t, resp, http.StatusForbidden, r.name+", 6 minutes on")
		if got := resp.Header.Get(assurance.HTTPHeader); got != assurance.ReasonReauthenticationRequired {
			t.Errorf("%s, 6 minutes on: %s %q", r.name, assurance.HTTPHeader, got)
		}
		var b assurance.Body
		if err := json.NewDecoder(resp.Body).Decode(&b); err != nil || b.Error != assurance.ReasonReauthenticationRequired || b.Metadata["max_auth_age"] != "5m0s" || b.Metadata["authenticated_at"] == "" {
			t.Errorf("%s, 6 minutes on: body %+v (%v)", r.name, b, err)
		}
	}
	wantIdentity(t, e.ask(t, "GET", forwardauth.AuthRequestPath, nginx(map[string]string{"Cookie": cookie(highTok)})), "user-high", highID, "6 minutes on, no requirement")

	// The step-up: the login backend rotates each session, and the new
	// tokens pass.
	reTok, reID := e.rotate(t, &sessionauthv1.RotateSessionRequest{Token: highTok, Reauthenticated: true})
	upTok, upID := e.rotate(t, &sessionauthv1.RotateSessionRequest{Token: lowTok, AssuranceLevel: 2, Reauthenticated: true})
	for _, r := range routes("min_assurance_level=2&max_auth_age=5m", envoy) {
		wantIdentity(t, e.askRoute(t, r, map[string]string{"Cookie": cookie(reTok)}), "user-high", reID, r.name+", reauthenticated")
		wantIdentity(t, e.askRoute(t, r, map[string]string{"Authorization": "Bearer " + upTok}), "user-low", upID, r.name+", stepped up")
	}
	// A level-2 session that has not reauthenticated is not enough.
	upOnly, _ := e.createLevel(t, "user-low", 1)
	e.clock.Advance(6 * time.Minute)
	upOnly, _ = e.rotate(t, &sessionauthv1.RotateSessionRequest{Token: upOnly, AssuranceLevel: 2})
	wantStatus(t, e.ask(t, "GET", forwardauth.ForwardAuthPath+"?min_assurance_level=2&max_auth_age=5m", traefik("GET", map[string]string{"Cookie": cookie(upOnly)})),
		http.StatusForbidden, "a level raised without reauthenticating, 6 minutes after the login")
}

// TestMalformedRequirement: a requirement the gateway's configuration got
// wrong fails closed: 500 naming the parameter, for a live session and
// without one, logged at error level; never an allow.
func TestMalformedRequirement(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", server.Config{})
	tok, _ := e.createLevel(t, "user-1", 3)
	for _, tc := range []struct {
		query string
		envoy map[string]string
		key   string
	}{
		{"min_assurance_level=4", map[string]string{forwardauth.MinLevelHeader: "4"}, "min_assurance_level"},
		{"min_assurance_level=-1", map[string]string{forwardauth.MinLevelHeader: "-1"}, "min_assurance_level"},
		{"min_assurance_level=two", map[string]string{forwardauth.MinLevelHeader: "two"}, "min_assurance_level"},
		{"min_assurance_level=2.0", map[string]string{forwardauth.MinLevelHeader: "2,3"}, "min_assurance_level"},
		{"min_assurance_level=", map[string]string{forwardauth.MinLevelHeader: ""}, "min_assurance_level"},
		{"min_assurance_level", nil, "min_assurance_level"},
		{"min_assurance_level=2&min_assurance_level=0", nil, "min_assurance_level"},
		{"min_assurance_level=%zz", nil, "min_assurance_level"},
		{"max_auth_age=soon", map[string]string{forwardauth.MaxAuthAgeHeader: "soon"}, "max_auth_age"},
		{"max_auth_age=-5m", map[string]string{forwardauth.MaxAuthAgeHeader: "-5m"}, "max_auth_age"},
		{"max_auth_age=5%20m", map[string]string{forwardauth.MaxAuthAgeHeader: "5 m"}, "max_auth_age"},
		{"min_assurance_level=2&max_auth_age=", map[string]string{forwardauth.MinLevelHeader: "2", forwardauth.MaxAuthAgeHeader: ""}, "max_auth_age"},
		{"max_auth_age=5m&max_auth_age=1h", nil, "max_auth_age"},
	} {
		for _, r := range routes(tc.query, tc.envoy) {
			if r.name == "envoy http" && tc.envoy == nil {
				continue
			}
			for cname, cred := range map[string]map[string]string{"a live session": {"Cookie": cookie(tok)}, "no token": nil} {
				what := r.name + ", " + tc.query + ", " + cname
				resp := e.askRoute(t, r, cred)
				wantStatus(t, resp, http.StatusInternalServerError, what)
				body, _ := io.ReadAll(resp.Body)
				if !strings.Contains(string(body), tc.key) || !strings.Contains(string(body), "malformed") {
					t.Errorf("%s: body %q does not name %s", what, body, tc.key)
				}
				if resp.Header.Get("X-User-Id") != "" || resp.Header.Get(assurance.HTTPHeader) != "" {
					t.Errorf("%s: headers %v", what, resp.Header)
				}
			}
		}
	}
	// Two header lines are one malformed requirement, never a choice.
	req, err := http.NewRequestWithContext(testutil.CallCtx(t), "GET", e.base+forwardauth.ExtAuthzPrefix+"x", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Cookie", cookie(tok))
	req.Header.Add(forwardauth.MinLevelHeader, "2")
	req.Header.Add(forwardauth.MinLevelHeader, "0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wantStatus(t, resp, http.StatusInternalServerError, "envoy http, two requirement header lines")

	logs := e.d.Logs.String()
	for _, want := range []string{"level=ERROR", "step-up requirement is malformed", `query parameter min_assurance_level \"two\"`, "header X-Sessiond-Min-Assurance-Level: min_assurance_level", "header X-Sessiond-Max-Auth-Age: max_auth_age"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the logs lack %q", want)
		}
	}
	if strings.Contains(logs, tok[28:]) {
		t.Error("a token appears in the logs")
	}
}
