package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/client"
	"github.com/sessiond/sessiond/client/clienttest"
	"github.com/sessiond/sessiond/internal/sessiondtest"
	"github.com/sessiond/sessiond/internal/testutil"
)

// A second user, whose sessions the demo user must not touch.
const (
	otherUserID   = "user-2"
	otherEmail    = "eve@example.com"
	otherPassword = "eve-password"
)

// env is the login backend, in front of a real sessiond: in process on its
// embedded store (clienttest), or on a real Redis for a test that looks at
// the keys.
type env struct {
	stopSessiond func()         // sessiond down
	rdb          *redis.Client  // sessiond's Redis (newEnvOnRedis only)
	sessions     *client.Client // the app's client, for checks behind its back
	url          string

	mu     sync.Mutex
	tokens []string // every token issued, to check that no log holds one
}

func newEnv(t *testing.T) *env {
	t.Helper()
	sessiondLogs := &testutil.SyncBuffer{}
	d := clienttest.Start(t, clienttest.WithLogOutput(sessiondLogs))
	return startApp(t, d.Conn(), d.Stop, sessiondLogs)
}

// newEnvOnRedis is newEnv with sessiond on a real redis-server, whose keys
// e.rdb reads.
func newEnvOnRedis(t *testing.T) *env {
	t.Helper()
	d := sessiondtest.Start(t)
	e := startApp(t, d.Conn, d.Stop, d.Logs)
	e.rdb = d.RDB
	return e
}

// startApp serves the app, a client of sessiond over conn, until the test
// ends; stop stops sessiond, which logs to sessiondLogs.
func startApp(t *testing.T, conn grpc.ClientConnInterface, stop func(), sessiondLogs fmt.Stringer) *env {
	t.Helper()
	users, err := demoUsers(bcrypt.MinCost) // DefaultCost is slow on purpose, more so under -race
	if err != nil {
		t.Fatal(err)
	}
	if err := users.add(otherUserID, otherEmail, otherPassword); err != nil {
		t.Fatal(err)
	}
	e := &env{stopSessiond: stop, sessions: client.New(conn)}
	logs := &testutil.SyncBuffer{}
	srv := httptest.NewServer(newApp(e.sessions, users, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	e.url = srv.URL
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, tok := range e.tokens {
			if strings.Contains(logs.String(), tok) || strings.Contains(sessiondLogs.String(), tok) {
				t.Error("a log line holds a session token")
			}
		}
	})
	return e
}

type response struct {
	*http.Response
	body []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
}

// do sends a request; each option edits it (adds a cookie, a header).
func (e *env) do(t *testing.T, method, path, contentType, body string, opts ...func(*http.Request)) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, e.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("User-Agent", "login-test/1.0")
	for _, o := range opts {
		o(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp, b}
}

func withCookie(c *http.Cookie) func(*http.Request) {
	return func(r *http.Request) { r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value}) }
}

func withHeader(k, v string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set(k, v) }
}

func jsonCredentials(email, password string) string {
	b, _ := json.Marshal(map[string]string{"email": email, "password": password})
	return string(b)
}

type loginBody struct {
	Session sessionJSON `json:"session"`
	User    struct {
		ID    string `json:"id"`
		Email string `json:"email"`
	} `json:"user"`
}

// login logs in and returns the session cookie and the response body.
func (e *env) login(t *testing.T, email, password string, opts ...func(*http.Request)) (*http.Cookie, loginBody) {
	t.Helper()
	resp := e.do(t, "POST", "/login", "application/json", jsonCredentials(email, password), opts...)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %s %s", resp.Status, resp.body)
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 || cookies[0].Name != client.DefaultCookieName || cookies[0].Value == "" {
		t.Fatalf("login set cookies %v, want one %q", cookies, client.DefaultCookieName)
	}
	e.mu.Lock()
	e.tokens = append(e.tokens, cookies[0].Value)
	e.mu.Unlock()
	if strings.Contains(string(resp.body), cookies[0].Value) {
		t.Fatal("the login response body holds the token")
	}
	var body loginBody
	resp.json(t, &body)
	return cookies[0], body
}

// wantValid checks, behind the app's back, whether sessiond still accepts
// the token.
func (e *env) wantValid(t *testing.T, token string, want bool) {
	t.Helper()
	_, err := e.sessions.Validate(t.Context(), token)
	switch {
	case want && err != nil:
		t.Fatalf("Validate: %v, want a live session", err)
	case !want && status.Code(err) != codes.Unauthenticated:
		t.Fatalf("Validate: %v, want Unauthenticated", err)
	}
}

func (e *env) userSessions(t *testing.T, userID string) []*client.Session {
	t.Helper()
	var list []*client.Session
	for s, err := range e.sessions.UserSessions(t.Context(), userID, 0) {
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, s)
	}
	return list
}

func TestLoginSetsTheCookie(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	resp := e.do(t, "POST", "/login", "application/json", jsonCredentials(demoEmail, demoPassword))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %s %s", resp.Status, resp.body)
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", got)
	}
	raw := resp.Header.Values("Set-Cookie")
	if len(raw) != 1 {
		t.Fatalf("Set-Cookie %q, want one", raw)
	}
	c := resp.Cookies()[0]
	if c.Name != client.DefaultCookieName || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" || !c.Secure {
		t.Fatalf("cookie %q: want %s, HttpOnly, SameSite=Lax, Path=/, no Domain, Secure", raw[0], client.DefaultCookieName)
	}
	// The session's default lifetime is 24h: the cookie lasts as long.
	if c.MaxAge < int((24*time.Hour-time.Minute).Seconds()) || c.MaxAge > int((24*time.Hour).Seconds()) {
		t.Fatalf("Max-Age %d, want about 24h", c.MaxAge)
	}
	if strings.Contains(string(resp.body), c.Value) {
		t.Fatal("the response body holds the token")
	}
	e.tokens = append(e.tokens, c.Value)

	var body loginBody
	resp.json(t, &body)
	s, err := e.sessions.Validate(t.Context(), c.Value)
	if err != nil {
		t.Fatal(err)
	}
	if body.Session.SessionID != s.GetSessionId() || body.User.ID != demoUserID || body.User.Email != demoEmail {
		t.Fatalf("login body %s, session %v", resp.body, s)
	}
	if s.GetUserId() != demoUserID || s.GetEmail() != demoEmail || s.GetClientIp() != "127.0.0.1" || s.GetUserAgent() != "login-test/1.0" {
		t.Fatalf("session %v: want the user, the client's IP and user agent", s)
	}
}

func TestLoginWithAFormAndAnyEmailCase(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	form := url.Values{"email": {" Demo@Example.com"}, "password": {demoPassword}}.Encode()
	resp := e.do(t, "POST", "/login", "application/x-www-form-urlencoded", form,
		withHeader("X-Forwarded-For", "203.0.113.7")) // not trusted by default
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 1 {
		t.Fatalf("form login: %s %s", resp.Status, resp.body)
	}
	e.tokens = append(e.tokens, resp.Cookies()[0].Value)
	list := e.userSessions(t, demoUserID)
	if len(list) != 1 || list[0].GetClientIp() != "127.0.0.1" {
		t.Fatalf("sessions %v: want one, from the TCP peer, not X-Forwarded-For", list)
	}
}

func TestLoginRejected(t *testing.T) {
	t.Parallel()
	e := newEnvOnRedis(t)
	wrongPassword := e.do(t, "POST", "/login", "application/json", jsonCredentials(demoEmail, "not-the-password"))
	unknownEmail := e.do(t, "POST", "/login", "application/json", jsonCredentials("nobody@example.com", demoPassword))
	tooLong := e.do(t, "POST", "/login", "application/json", jsonCredentials(demoEmail, demoPassword+strings.Repeat("x", 100)))
	for name, resp := range map[string]response{"wrong password": wrongPassword, "unknown email": unknownEmail, "password over 72 bytes": tooLong} {
		if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
			t.Errorf("%s: %s, cookies %v; want 401 and no cookie", name, resp.Status, resp.Cookies())
		}
		if string(resp.body) != string(wrongPassword.body) || !strings.Contains(string(resp.body), `"invalid email or password"`) {
			t.Errorf("%s: body %q, want the same generic message for every failure", name, resp.body)
		}
	}

	for _, tc := range []struct {
		name, contentType, body string
		want                    int
	}{
		{"no password", "application/json", `{"email":"demo@example.com"}`, http.StatusBadRequest},
		{"not JSON", "application/json", `email=demo@example.com`, http.StatusBadRequest},
		{"text/plain", "text/plain", jsonCredentials(demoEmail, demoPassword), http.StatusUnsupportedMediaType},
		{"body over 4 KiB", "application/json", jsonCredentials(demoEmail, strings.Repeat("x", 5000)), http.StatusBadRequest},
	} {
		if resp := e.do(t, "POST", "/login", tc.contentType, tc.body); resp.StatusCode != tc.want || len(resp.Cookies()) != 0 {
			t.Errorf("%s: %s %s, want %d", tc.name, resp.Status, resp.body, tc.want)
		}
	}
	// A cross-site form posting the right credentials (login CSRF).
	resp := e.do(t, "POST", "/login", "application/json", jsonCredentials(demoEmail, demoPassword),
		withHeader("Sec-Fetch-Site", "cross-site"), withHeader("Origin", "https://evil.example"))
	if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Errorf("cross-site login: %s, want 403", resp.Status)
	}
	if resp := e.do(t, "GET", "/login", "", ""); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /login: %s, want 405", resp.Status)
	}

	if list := e.userSessions(t, demoUserID); len(list) != 0 {
		t.Fatalf("a rejected login created sessions: %v", list)
	}
	if n, err := e.rdb.DBSize(t.Context()).Result(); err != nil || n != 0 {
		t.Fatalf("Redis holds %d keys (%v), want none", n, err)
	}
}

func TestMe(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cookie, login := e.login(t, demoEmail, demoPassword)

	for name, opt := range map[string]func(*http.Request){
		"cookie": withCookie(cookie),
		"bearer": withHeader("Authorization", "Bearer "+cookie.Value),
	} {
		resp := e.do(t, "GET", "/me", "", "", opt)
		var me sessionJSON
		resp.json(t, &me)
		if resp.StatusCode != http.StatusOK || me.SessionID != login.Session.SessionID || me.UserID != demoUserID ||
			me.Email != demoEmail || !me.Current || me.ExpiresAt.IsZero() {
			t.Fatalf("/me with the %s: %s %s", name, resp.Status, resp.body)
		}
	}

	for name, opts := range map[string][]func(*http.Request){
		"no credential":      nil,
		"a made-up cookie":   {withCookie(&http.Cookie{Name: "session", Value: "not-a-token"})},
		"a made-up bearer":   {withHeader("Authorization", "Bearer not-a-token")},
		"another cookie":     {withCookie(&http.Cookie{Name: "session", Value: cookie.Value})}, // not the session cookie's name
		"another scheme":     {withHeader("Authorization", "Basic ZGVtbzpkZW1v")},
		"a token in a query": {func(r *http.Request) { r.URL.RawQuery = "token=" + cookie.Value }},
	} {
		resp := e.do(t, "GET", "/me", "", "", opts...)
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("/me with %s: %s, WWW-Authenticate %q; want 401 with a Bearer challenge", name, resp.Status, resp.Header.Get("WWW-Authenticate"))
		}
	}
}

func TestSessionsListAndRevoke(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	laptop, first := e.login(t, demoEmail, demoPassword, withHeader("User-Agent", "laptop"))
	phone, second := e.login(t, demoEmail, demoPassword, withHeader("User-Agent", "phone"))
	eve, eves := e.login(t, otherEmail, otherPassword)

	resp := e.do(t, "GET", "/sessions", "", "", withCookie(phone))
	var list struct{ Sessions []sessionJSON }
	resp.json(t, &list)
	if resp.StatusCode != http.StatusOK || len(list.Sessions) != 2 {
		t.Fatalf("/sessions: %s %s, want the user's two sessions", resp.Status, resp.body)
	}
	got := list.Sessions
	if got[0].SessionID != second.Session.SessionID || !got[0].Current || got[0].UserAgent != "phone" ||
		got[1].SessionID != first.Session.SessionID || got[1].Current || got[1].UserAgent != "laptop" {
		t.Fatalf("/sessions %s: want phone (current), then laptop", resp.body)
	}

	// Another user's session, and one that does not exist: the same 404.
	notFound := e.do(t, "DELETE", "/sessions/"+eves.Session.SessionID, "", "", withCookie(phone))
	if notFound.StatusCode != http.StatusNotFound {
		t.Fatalf("DELETE another user's session: %s, want 404", notFound.Status)
	}
	e.wantValid(t, eve.Value, true)
	missing := e.do(t, "DELETE", "/sessions/00000000_01938c5e-7b1a-7c3e-9a4f-2b6d1e0c9f11", "", "", withCookie(phone))
	if missing.StatusCode != http.StatusNotFound || string(missing.body) != string(notFound.body) {
		t.Fatalf("DELETE an unknown id: %s %q, want the same 404 as for another user's", missing.Status, missing.body)
	}

	// Sign out the laptop from the phone.
	resp = e.do(t, "DELETE", "/sessions/"+first.Session.SessionID, "", "", withCookie(phone))
	if resp.StatusCode != http.StatusNoContent || len(resp.Cookies()) != 0 {
		t.Fatalf("DELETE own other session: %s %s, want 204 and the cookie left alone", resp.Status, resp.body)
	}
	e.wantValid(t, laptop.Value, false)
	e.wantValid(t, phone.Value, true)
	if resp := e.do(t, "GET", "/me", "", "", withCookie(laptop)); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/me from the signed-out laptop: %s, want 401", resp.Status)
	}
	if resp := e.do(t, "DELETE", "/sessions/"+first.Session.SessionID, "", "", withCookie(phone)); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("DELETE it again: %s, want 404", resp.Status)
	}
	if resp := e.do(t, "DELETE", "/sessions/"+second.Session.SessionID, "", "", withCookie(laptop)); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("DELETE from a revoked session: %s, want 401", resp.Status)
	}

	// Revoking the current session also clears its cookie.
	resp = e.do(t, "DELETE", "/sessions/"+second.Session.SessionID, "", "", withCookie(phone))
	if resp.StatusCode != http.StatusNoContent || len(resp.Cookies()) != 1 || resp.Cookies()[0].MaxAge >= 0 {
		t.Fatalf("DELETE the current session: %s, cookies %v; want 204 and the cookie cleared", resp.Status, resp.Header.Values("Set-Cookie"))
	}
	e.wantValid(t, phone.Value, false)
	e.wantValid(t, eve.Value, true)
}

func TestLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cookie, _ := e.login(t, demoEmail, demoPassword)
	other, _ := e.login(t, demoEmail, demoPassword)

	resp := e.do(t, "POST", "/logout", "", "", withCookie(cookie))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %s %s", resp.Status, resp.body)
	}
	cleared := resp.Cookies()
	if len(cleared) != 1 || cleared[0].Name != "__Host-session" || cleared[0].Value != "" || cleared[0].MaxAge >= 0 ||
		!cleared[0].Secure || !cleared[0].HttpOnly || cleared[0].Path != "/" {
		t.Fatalf("logout Set-Cookie %q, want the cookie cleared (Max-Age=0), with the attributes it was set with", resp.Header.Values("Set-Cookie"))
	}
	e.wantValid(t, cookie.Value, false)
	e.wantValid(t, other.Value, true)
	if resp := e.do(t, "GET", "/me", "", "", withCookie(cookie)); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/me after logout: %s, want 401", resp.Status)
	}
	// Logging out again, or without any session, still clears the cookie.
	for name, opts := range map[string][]func(*http.Request){
		"again":         {withCookie(cookie)},
		"no cookie":     nil,
		"made-up token": {withHeader("Authorization", "Bearer not-a-token")},
	} {
		if resp := e.do(t, "POST", "/logout", "", "", opts...); resp.StatusCode != http.StatusNoContent || len(resp.Cookies()) != 1 {
			t.Errorf("logout %s: %s %s, want 204 and the cookie cleared", name, resp.Status, resp.body)
		}
	}
	// A cross-site POST cannot log the user out.
	resp = e.do(t, "POST", "/logout", "", "", withCookie(other), withHeader("Sec-Fetch-Site", "cross-site"))
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site logout: %s, want 403", resp.Status)
	}
	e.wantValid(t, other.Value, true)
}

func TestLogoutAll(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, _ := e.login(t, demoEmail, demoPassword)
	b, _ := e.login(t, demoEmail, demoPassword)
	current, cur := e.login(t, demoEmail, demoPassword)
	eve, _ := e.login(t, otherEmail, otherPassword)

	resp := e.do(t, "POST", "/logout-all", "", "", withCookie(current))
	var body struct{ Revoked int }
	resp.json(t, &body)
	if resp.StatusCode != http.StatusOK || body.Revoked != 2 {
		t.Fatalf("logout-all: %s %s, want 2 revoked", resp.Status, resp.body)
	}
	list := e.userSessions(t, demoUserID)
	if len(list) != 1 || list[0].GetSessionId() != cur.Session.SessionID {
		t.Fatalf("sessions left %v, want only the current one", list)
	}
	e.wantValid(t, a.Value, false)
	e.wantValid(t, b.Value, false)
	e.wantValid(t, current.Value, true)
	e.wantValid(t, eve.Value, true)
	if resp := e.do(t, "POST", "/logout-all", "", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("logout-all without a session: %s, want 401", resp.Status)
	}
}

// With sessiond down nothing is let through, and the client is told to retry.
func TestSessiondDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cookie, _ := e.login(t, demoEmail, demoPassword)
	e.stopSessiond()
	for _, req := range []struct{ method, path, contentType, body string }{
		{"GET", "/me", "", ""},
		{"GET", "/sessions", "", ""},
		{"POST", "/logout", "", ""},
		{"POST", "/login", "application/json", jsonCredentials(demoEmail, demoPassword)},
	} {
		resp := e.do(t, req.method, req.path, req.contentType, req.body, withCookie(cookie))
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s with sessiond down: %s %s, want 503 with Retry-After", req.method, req.path, resp.Status, resp.body)
		}
	}
}
