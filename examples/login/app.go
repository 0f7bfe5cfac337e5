package main

import (
	"encoding/json"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sessiond/sessiond/client"
)

// app is the login backend: it checks passwords itself and leaves sessions to
// sessiond.
type app struct {
	sessions *client.Client
	users    *users
	log      *slog.Logger
}

// The session cookie is client.DefaultCookieName, "__Host-session", as the
// middleware and sessiond's gateways expect: the "__Host-" prefix makes
// browsers accept it only if it is Secure, has Path=/ and no Domain, so that
// no subdomain or plain-HTTP page can set or shadow it. Browsers (and curl)
// treat http://localhost as secure, so the same cookie works in development.

// newApp returns the login backend's handler.
func newApp(sessions *client.Client, users *users, log *slog.Logger) http.Handler {
	a := &app{sessions: sessions, users: users, log: log}
	// The session comes from "Authorization: Bearer <token>" or the cookie.
	auth := client.HTTPMiddleware(sessions)

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", a.login)
	mux.HandleFunc("POST /logout", a.logout)
	mux.Handle("POST /logout-all", auth(http.HandlerFunc(a.logoutAll)))
	mux.Handle("GET /me", auth(http.HandlerFunc(a.me)))
	mux.Handle("GET /sessions", auth(http.HandlerFunc(a.listSessions)))
	mux.Handle("DELETE /sessions/{id}", auth(http.HandlerFunc(a.revokeSession)))
	// SameSite=Lax keeps the cookie off cross-site POSTs and DELETEs; this
	// also rejects cross-site browser requests that carry no cookie, such as
	// a forged login form (login CSRF).
	return http.NewCrossOriginProtection().Handler(mux)
}

// msgInvalidCredentials is the one answer to a wrong email or password: it
// does not say which one was wrong.
const msgInvalidCredentials = "invalid email or password"

// login: POST /login with {"email": ..., "password": ...} (JSON or form).
func (a *app) login(w http.ResponseWriter, r *http.Request) {
	email, password, code := readCredentials(w, r)
	if code != http.StatusOK {
		writeError(w, code, http.StatusText(code)+`: send "email" and "password" as JSON or a form`)
		return
	}
	u, ok := a.users.authenticate(email, password)
	if !ok {
		a.log.InfoContext(r.Context(), "login failed", "client_ip", clientIP(r))
		writeError(w, http.StatusUnauthorized, msgInvalidCredentials)
		return
	}
	token, s, err := a.sessions.Create(r.Context(), client.NewSession{
		UserID:    u.ID,
		Email:     u.Email,
		ClientIP:  clientIP(r),
		UserAgent: userAgent(r),
	})
	if err != nil {
		a.sessiondError(w, r, "create session", err)
		return
	}
	http.SetCookie(w, a.sessionCookie(token, s.GetExpiresAt().AsTime()))
	a.log.InfoContext(r.Context(), "login", "user_id", u.ID, "session_id", s.GetSessionId())
	// The token is in the cookie only: never in the body, never in a log.
	writeJSON(w, http.StatusOK, map[string]any{"session": newSessionJSON(s, true), "user": u})
}

// readCredentials reads the email and password of a login request, and
// returns http.StatusOK or the status to answer.
func readCredentials(w http.ResponseWriter, r *http.Request) (email, password string, code int) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mediaType {
	case "application/json":
		var body struct {
			Email    string `json:"email"`
			Password string `json:"password"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			return "", "", http.StatusBadRequest
		}
		email, password = body.Email, body.Password
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return "", "", http.StatusBadRequest
		}
		email, password = r.PostForm.Get("email"), r.PostForm.Get("password")
	default:
		return "", "", http.StatusUnsupportedMediaType
	}
	if email == "" || password == "" {
		return "", "", http.StatusBadRequest
	}
	return email, password, http.StatusOK
}

// me: GET /me, the caller's session.
func (a *app) me(w http.ResponseWriter, r *http.Request) {
	s, _ := client.SessionFromContext(r.Context())
	writeJSON(w, http.StatusOK, newSessionJSON(s, true))
}

// listSessions: GET /sessions, the caller's live sessions ("your devices"),
// newest first, the current one marked.
func (a *app) listSessions(w http.ResponseWriter, r *http.Request) {
	cur, _ := client.SessionFromContext(r.Context())
	list := []sessionJSON{}
	for s, err := range a.sessions.UserSessions(r.Context(), cur.GetUserId(), 0) {
		if err != nil {
			a.sessiondError(w, r, "list sessions", err)
			return
		}
		list = append(list, newSessionJSON(s, s.GetSessionId() == cur.GetSessionId()))
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": list})
}

// revokeSession: DELETE /sessions/{id}, "sign out that device". Only the
// caller's own sessions can be revoked; any other id, whether it exists or
// not, is 404.
func (a *app) revokeSession(w http.ResponseWriter, r *http.Request) {
	cur, _ := client.SessionFromContext(r.Context())
	id := r.PathValue("id")
	owned := false
	for s, err := range a.sessions.UserSessions(r.Context(), cur.GetUserId(), 0) {
		if err != nil {
			a.sessiondError(w, r, "list sessions", err)
			return
		}
		if s.GetSessionId() == id {
			owned = true
			break
		}
	}
	if !owned {
		writeError(w, http.StatusNotFound, "no such session")
		return
	}
	if _, err := a.sessions.RevokeByID(r.Context(), id); err != nil {
		a.sessiondError(w, r, "revoke session", err)
		return
	}
	if id == cur.GetSessionId() {
		http.SetCookie(w, a.clearCookie())
	}
	a.log.InfoContext(r.Context(), "session revoked", "user_id", cur.GetUserId(), "session_id", id, "by_session_id", cur.GetSessionId())
	w.WriteHeader(http.StatusNoContent)
}

// logout: POST /logout, end the caller's session and clear the cookie. It
// needs no live session: logging out twice, or with an expired cookie,
// succeeds.
func (a *app) logout(w http.ResponseWriter, r *http.Request) {
	if token, ok := client.TokenFromRequest(r); ok {
		revoked, err := a.sessions.Revoke(r.Context(), token)
		// InvalidArgument: not even a well-formed token, so nothing to end.
		if err != nil && status.Code(err) != codes.InvalidArgument {
			a.sessiondError(w, r, "revoke session", err)
			return
		}
		a.log.InfoContext(r.Context(), "logout", "revoked", revoked)
	}
	http.SetCookie(w, a.clearCookie())
	w.WriteHeader(http.StatusNoContent)
}

// logoutAll: POST /logout-all, end every session of the caller but this one.
func (a *app) logoutAll(w http.ResponseWriter, r *http.Request) {
	cur, _ := client.SessionFromContext(r.Context())
	n, err := a.sessions.RevokeUser(r.Context(), cur.GetUserId(), cur.GetSessionId())
	if err != nil {
		a.sessiondError(w, r, "revoke user sessions", err)
		return
	}
	a.log.InfoContext(r.Context(), "logout everywhere else", "user_id", cur.GetUserId(), "session_id", cur.GetSessionId(), "revoked", n)
	writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

// sessionCookie carries the token until the session's absolute expiry
// (sessiond may end it earlier: idle timeout, revocation).
func (a *app) sessionCookie(token string, expires time.Time) *http.Cookie {
	return &http.Cookie{
		Name:     client.DefaultCookieName,
		Value:    token,
		Path:     "/",
		MaxAge:   max(1, int(time.Until(expires).Seconds())),
		HttpOnly: true, // out of reach of JavaScript
		Secure:   true, // HTTPS only (and http://localhost)
		SameSite: http.SameSiteLaxMode,
	}
}

// clearCookie tells the browser to drop the session cookie.
func (a *app) clearCookie() *http.Cookie {
	c := a.sessionCookie("", time.Time{})
	c.MaxAge = -1
	return c
}

// sessiondError answers a failed sessiond call: 503 when sessiond (or its
// Redis) could not answer, so the client retries; 500 otherwise.
func (a *app) sessiondError(w http.ResponseWriter, r *http.Request, op string, err error) {
	switch status.Code(err) {
	case codes.Canceled:
		// The client went away.
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		a.log.WarnContext(r.Context(), op+": sessiond unavailable", "error", err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "the session service is unavailable; retry later")
	default:
		a.log.ErrorContext(r.Context(), op+": sessiond failed", "error", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

// sessionJSON is a session as this API shows it.
type sessionJSON struct {
	SessionID     string    `json:"session_id"`
	UserID        string    `json:"user_id"`
	Email         string    `json:"email,omitempty"`
	CreatedAt     time.Time `json:"created_at,omitzero"`
	ExpiresAt     time.Time `json:"expires_at,omitzero"`
	IdleExpiresAt time.Time `json:"idle_expires_at,omitzero"`
	LastSeenAt    time.Time `json:"last_seen_at,omitzero"`
	ClientIP      string    `json:"client_ip,omitempty"`
	UserAgent     string    `json:"user_agent,omitempty"`
	Current       bool      `json:"current"` // the session of this request
}

func newSessionJSON(s *client.Session, current bool) sessionJSON {
	t := func(ts *timestamppb.Timestamp) time.Time {
		if ts == nil {
			return time.Time{}
		}
		return ts.AsTime()
	}
	return sessionJSON{
		SessionID:     s.GetSessionId(),
		UserID:        s.GetUserId(),
		Email:         s.GetEmail(),
		CreatedAt:     t(s.GetCreatedAt()),
		ExpiresAt:     t(s.GetExpiresAt()),
		IdleExpiresAt: t(s.GetIdleExpiresAt()),
		LastSeenAt:    t(s.GetLastSeenAt()),
		ClientIP:      s.GetClientIp(),
		UserAgent:     s.GetUserAgent(),
		Current:       current,
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// clientIP is the address the request came from: the TCP peer. Behind a
// reverse proxy that is the proxy; read X-Forwarded-For only from proxies
// you trust, since any client can send it.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return ""
	}
	return addr.WithZone("").Unmap().String()
}

// maxUserAgentBytes is sessiond's limit on user_agent.
const maxUserAgentBytes = 512

// userAgent is the request's User-Agent as sessiond accepts it: valid UTF-8,
// no control characters, at most 512 bytes (cut at a character boundary).
func userAgent(r *http.Request) string {
	ua := strings.Map(func(c rune) rune {
		if unicode.IsControl(c) {
			return -1
		}
		return c
	}, strings.ToValidUTF8(r.UserAgent(), ""))
	for len(ua) > maxUserAgentBytes {
		_, size := utf8.DecodeLastRuneInString(ua)
		ua = ua[:len(ua)-size]
	}
	return ua
}
