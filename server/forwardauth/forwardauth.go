// Package forwardauth answers the HTTP authorization requests of gateways
// (nginx auth_request, Traefik ForwardAuth, Caddy forward_auth, Envoy's
// ext_authz in HTTP-service mode) with the service's validation: the same
// rate limits, touches and metrics as ValidateSession, failing closed.
//
// Endpoints (the names Authelia's users know):
//
//	/authz/auth-request   nginx auth_request, ingress-nginx auth-url: 200, 401
//	                      (with Location to the login page for a browser
//	                      navigation, for error_page), 403, or 503; nginx
//	                      turns anything else into 500
//	/authz/forward-auth   Traefik and Caddy, which pass the answer to the
//	                      client on failure: 200, a 302/303 to the login page
//	                      for a browser navigation, 401, 403, 429 or 503
//	/authz/ext-authz/...  Envoy's HTTP service (path_prefix): 200 allows,
//	                      401, 403, 429 or 503 deny
//
// A 200 names the session in response headers that the gateway copies to
// the upstream request; they come only from the validated session, never
// from the request.
//
// A route can demand a strong or recent enough authentication (step-up):
// the query parameters min_assurance_level and max_auth_age of the endpoint's
// URL, which the gateway's configuration holds (/authz/auth-request?
// min_assurance_level=2&max_auth_age=15m), or for Envoy's HTTP service, whose
// path and query are the client's own, the headers MinLevelHeader and
// MaxAuthAgeHeader (its authorization_request.headers_to_add). A live session
// that falls short gets 403 with the reason in the Sessiond-Reason header and
// a JSON body (internal/assurance); a malformed requirement gets 500, never
// an allow.
package forwardauth

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/internal/assurance"
	"github.com/sessiond/sessiond/internal/credential"
	"github.com/sessiond/sessiond/internal/retryafter"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/access"
	"github.com/sessiond/sessiond/server/store"
)

// The endpoints.
const (
	AuthRequestPath = "/authz/auth-request"
	ForwardAuthPath = "/authz/forward-auth"
	ExtAuthzPrefix  = "/authz/ext-authz/"
)

// The request headers that carry a route's requirement to the Envoy HTTP
// endpoint (ExtAuthzPrefix): the values of assurance.MinLevelParam and
// assurance.MaxAuthAgeParam.
const (
	MinLevelHeader   = "X-Sessiond-Min-Assurance-Level"
	MaxAuthAgeHeader = "X-Sessiond-Max-Auth-Age"
)

// The defaults of Config.
const (
	DefaultCookieName      = "__Host-session"
	DefaultSessionIDHeader = "x-session-id"
	DefaultUserIDHeader    = "x-user-id"
	DefaultEmailHeader     = "x-user-email"
)

// DefaultTrustedProxies are the peers whose X-Forwarded-For is believed
// when Config.TrustedProxies is nil: loopback.
var DefaultTrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// Config configures the endpoints. The zero value is the defaults.
type Config struct {
	// CookieName is the cookie that carries the token when the request has
	// no "Authorization: Bearer" header; "" means DefaultCookieName.
	CookieName string
	// SessionIDHeader, UserIDHeader and EmailHeader name the response
	// headers of a 200 that tell the upstream the session; "" means the
	// defaults (x-session-id, x-user-id, x-user-email).
	SessionIDHeader, UserIDHeader, EmailHeader string
	// LoginURL, if set, is where a browser navigation without a live
	// session is sent, with the original URL in the rd query parameter.
	LoginURL string
	// TrustedProxies are the peers (the gateways) whose X-Forwarded-For
	// names the end user, so that failed validations are limited per end
	// user behind a gateway; nil means DefaultTrustedProxies. From other
	// peers, the peer is the end user.
	TrustedProxies []netip.Prefix
	// Logger gets a debug line per request (the session id, never the
	// token); nil means none.
	Logger *slog.Logger
	// Observe, if not nil, is called once per request with the endpoint
	// ("auth-request", "forward-auth", "ext-authz"), the outcome ("allowed",
	// "unauthenticated", "forbidden" (a live session short of the route's
	// requirement), "rate_limited", "unavailable", "error") and the time it
	// took: the metrics.
	Observe func(endpoint, outcome string, took time.Duration)
}

// Handler serves the endpoints over svc's validation.
type Handler struct {
	svc *server.Server
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
}

// New returns the endpoints' handler. It does no I/O.
func New(svc *server.Server, cfg Config) *Handler {
	for _, d := range []struct {
		field *string
		def   string
	}{{&cfg.CookieName, DefaultCookieName}, {&cfg.SessionIDHeader, DefaultSessionIDHeader},
		{&cfg.UserIDHeader, DefaultUserIDHeader}, {&cfg.EmailHeader, DefaultEmailHeader}} {
		if *d.field == "" {
			*d.field = d.def
		}
	}
	if cfg.TrustedProxies == nil {
		cfg.TrustedProxies = DefaultTrustedProxies
	}
	h := &Handler{svc: svc, cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.mux.HandleFunc(AuthRequestPath, func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, authRequest) })
	h.mux.HandleFunc(ForwardAuthPath, func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, forwardAuth) })
	h.mux.HandleFunc(ExtAuthzPrefix, func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, envoyHTTP) })
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// protocol is a gateway's way of asking.
type protocol int

const (
	authRequest protocol = iota // nginx
	forwardAuth                 // Traefik, Caddy
	envoyHTTP                   // Envoy's HTTP service
)

func (p protocol) String() string {
	return [...]string{"auth-request", "forward-auth", "ext-authz"}[p]
}

// serve answers one authorization request.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, p protocol) {
	start := time.Now()
	outcome := h.decide(w, r, p)
	if h.cfg.Observe != nil {
		h.cfg.Observe(p.String(), outcome, time.Since(start))
	}
}

func (h *Handler) decide(w http.ResponseWriter, r *http.Request, p protocol) string {
	w.Header().Set("Cache-Control", "no-store")
	peer := hostOf(r.RemoteAddr)
	// The gateway is the caller (its address, for the rate limits); the end
	// user is the client it forwards for, when it is a trusted proxy.
	ctx := access.ContextWithCaller(r.Context(), access.Caller{Name: access.Anonymous, Addr: r.RemoteAddr})
	// The endpoint goes on each line rather than into a logger made With
	// it, and the debug lines are built only when debug logging is on: both
	// would cost allocations on every request for lines that are dropped.
	endpoint := slog.String("endpoint", p.String())
	debug := h.log.Enabled(ctx, slog.LevelDebug)
	// The route's requirement first: a mistake in the gateway's
	// configuration denies every request of the route, with or without a
	// session, so that it shows at once.
	need, err := requirement(r, p)
	if err != nil {
		h.log.ErrorContext(ctx, "forward auth denied: the route's step-up requirement is malformed; fix the gateway's configuration", endpoint, "error", err)
		http.Error(w, "500 Internal Server Error: the route's step-up requirement is malformed: "+err.Error(), http.StatusInternalServerError)
		return "error"
	}
	token := h.token(r)
	if token == "" {
		if debug {
			h.log.DebugContext(ctx, "forward auth denied: no session token", endpoint)
		}
		h.deny(w, r, p, status.New(codes.Unauthenticated, "no session token"))
		return "unauthenticated"
	}
	ctx, release := h.svc.WithRequestTimeout(ctx) // --request-timeout, as for a gRPC call
	defer release()
	sess, err := h.svc.ValidateToken(ctx, token, func() string { return h.endUser(r, peer) })
	if err != nil {
		st := status.Convert(err)
		if debug {
			h.log.DebugContext(ctx, "forward auth denied", endpoint, "code", st.Code().String())
		}
		h.deny(w, r, p, st)
		return outcomeOf(st.Code())
	}
	if err := h.svc.Require(sess, need); err != nil {
		info, ok := assurance.Denial(err)
		if !ok { // never allowed: only Check's denials are expected here
			st := status.Convert(err)
			h.log.ErrorContext(ctx, "forward auth denied: checking the requirement failed", endpoint, slog.String("session_id", sess.ID), "error", err)
			h.deny(w, r, p, st)
			return outcomeOf(st.Code())
		}
		if debug {
			h.log.DebugContext(ctx, "forward auth denied: the session falls short of the route's requirement",
				endpoint, slog.String("session_id", sess.ID), slog.String("user_id", sess.UserID), slog.String("reason", info.GetReason()))
		}
		assurance.WriteHTTP(w, err)
		return "forbidden"
	}
	if debug {
		h.log.DebugContext(ctx, "forward auth allowed", endpoint, slog.String("session_id", sess.ID), slog.String("user_id", sess.UserID))
	}
	h.allow(w, sess)
	return "allowed"
}

// requirement is what the route asks of the session: the query parameters
// of the endpoint's URL, which the gateway's configuration holds (nginx's
// proxy_pass, Caddy's uri, Traefik's address); for Envoy's HTTP service the
// headers MinLevelHeader and MaxAuthAgeHeader, since the path and query it
// asks with are the client's own, never the operator's. A malformed,
// empty or repeated value is an error (assurance.ParseRoute).
func requirement(r *http.Request, p protocol) (assurance.Requirement, error) {
	if p == envoyHTTP {
		level, age := r.Header.Values(MinLevelHeader), r.Header.Values(MaxAuthAgeHeader)
		if _, err := assurance.ParseRoute(level, nil); err != nil {
			return assurance.Requirement{}, fmt.Errorf("header %s: %w", MinLevelHeader, err)
		}
		need, err := assurance.ParseRoute(level, age)
		if err != nil {
			return need, fmt.Errorf("header %s: %w", MaxAuthAgeHeader, err)
		}
		return need, nil
	}
	level, err := queryParam(r.URL.RawQuery, assurance.MinLevelParam)
	if err != nil {
		return assurance.Requirement{}, err
	}
	age, err := queryParam(r.URL.RawQuery, assurance.MaxAuthAgeParam)
	if err != nil {
		return assurance.Requirement{}, err
	}
	need, err := assurance.ParseRoute(level, age)
	if err != nil {
		return need, fmt.Errorf("query parameter %w", err)
	}
	return need, nil
}

// queryParam returns the values of the query parameter name in raw (a URL's
// raw query), in order. A value that is not validly escaped is an error:
// url.ParseQuery would skip it, and the requirement would be silently gone.
func queryParam(raw, name string) ([]string, error) {
	var out []string
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(pair, "=")
		if key, err := url.QueryUnescape(k); err != nil || key != name {
			continue
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("query parameter %s %q: not validly escaped", name, v)
		}
		out = append(out, val)
	}
	return out, nil
}

// token is the request's session token: "Authorization: Bearer", else the
// session cookie, as ext_authz's Check takes it. Its form is not checked
// here: validation does, without a Redis call for a malformed one.
func (h *Handler) token(r *http.Request) string {
	if vals := r.Header.Values("Authorization"); len(vals) == 1 {
		if tok, ok := credential.FromAuthorization(vals[0], "Bearer"); ok {
			return tok
		}
	}
	if tok, ok := credential.CookieValue(strings.Join(r.Header.Values("Cookie"), "; "), h.cfg.CookieName); ok {
		return tok
	}
	return ""
}

// endUser is the address of the client the request is for: the last
// X-Forwarded-For entry when the peer is a trusted proxy (the address the
// gateway saw), else the peer itself.
func (h *Handler) endUser(r *http.Request, peer string) string {
	if !h.trusted(peer) {
		return peer
	}
	if v := r.Header.Values("X-Forwarded-For"); len(v) > 0 {
		list := v[len(v)-1]
		if i := strings.LastIndexByte(list, ','); i >= 0 {
			list = list[i+1:]
		}
		if addr := strings.TrimSpace(list); addr != "" {
			return addr
		}
	}
	if v := r.Header.Get("X-Real-Ip"); v != "" {
		return v
	}
	return peer
}

func (h *Handler) trusted(peer string) bool {
	ip, err := netip.ParseAddr(peer)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range h.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// allow answers 200 with the session in the response headers: all three,
// the email empty when the session has none. A header missing from a 200
// is not replaced by every gateway: Caddy 2.6's copy_headers then sends the
// text of its placeholder upstream ("{http.reverse_proxy.header.X-User-Email}").
func (h *Handler) allow(w http.ResponseWriter, s *store.Session) {
	w.Header().Set(h.cfg.SessionIDHeader, s.ID)
	w.Header().Set(h.cfg.UserIDHeader, s.UserID)
	w.Header().Set(h.cfg.EmailHeader, s.Email)
	w.WriteHeader(http.StatusOK)
}

// deny answers a request without a live session, as protocol p wants it.
func (h *Handler) deny(w http.ResponseWriter, r *http.Request, p protocol, st *status.Status) {
	hdr := w.Header()
	switch st.Code() {
	case codes.Unauthenticated:
		if login := h.loginRedirect(r, p); login != "" {
			hdr.Set("Location", login)
			if p == forwardAuth { // Traefik and Caddy hand the redirect to the client
				code := http.StatusSeeOther // after a POST, the login page is fetched with GET
				if m := r.Header.Get("X-Forwarded-Method"); m == "" || m == http.MethodGet || m == http.MethodHead {
					code = http.StatusFound
				}
				http.Error(w, "redirecting to the login page", code)
				return
			}
		}
		hdr.Set("WWW-Authenticate", `Bearer realm="sessiond"`)
		http.Error(w, "401 Unauthorized: no valid session", http.StatusUnauthorized)
	case codes.ResourceExhausted:
		hdr.Set("Retry-After", retryafter.Header(st))
		if p == authRequest { // nginx makes anything but 401/403 a 500
			http.Error(w, "503 Service Unavailable: too many failed session checks; retry later", http.StatusServiceUnavailable)
			return
		}
		http.Error(w, "429 Too Many Requests: too many failed session checks; retry later", http.StatusTooManyRequests)
	case codes.Unavailable:
		hdr.Set("Retry-After", "1")
		http.Error(w, "503 Service Unavailable: the session service is unavailable; retry later", http.StatusServiceUnavailable)
	default:
		http.Error(w, "500 Internal Server Error: the session could not be checked", http.StatusInternalServerError)
	}
}

func outcomeOf(c codes.Code) string {
	switch c {
	case codes.Unauthenticated:
		return "unauthenticated"
	case codes.ResourceExhausted:
		return "rate_limited"
	case codes.Unavailable:
		return "unavailable"
	}
	return "error"
}

// loginRedirect is where a browser navigation without a live session is
// sent: the login URL with the original URL in rd, or "" when no login URL
// is configured, the request is not a browser's navigation (an API call: no
// text/html in Accept, or an Authorization header), or the gateway did not
// say what the original URL was. rd is built only from the gateway's
// forwarded headers, and the login page must check it against its own
// allow-list before redirecting there.
func (h *Handler) loginRedirect(r *http.Request, p protocol) string {
	if h.cfg.LoginURL == "" || p == envoyHTTP || r.Header.Get("Authorization") != "" ||
		!strings.Contains(r.Header.Get("Accept"), "text/html") {
		return ""
	}
	orig := originalURL(r, p)
	if orig == "" {
		return ""
	}
	sep := "?"
	if strings.Contains(h.cfg.LoginURL, "?") {
		sep = "&"
	}
	return h.cfg.LoginURL + sep + "rd=" + url.QueryEscape(orig)
}

// originalURL is the URL the client asked the gateway for, from the
// gateway's headers: X-Original-URL (or X-Original-URI with Host) from
// nginx, X-Forwarded-Proto, -Host and -Uri from Traefik and Caddy.
func originalURL(r *http.Request, p protocol) string {
	var u string
	switch p {
	case authRequest:
		if u = r.Header.Get("X-Original-Url"); u == "" {
			if uri := r.Header.Get("X-Original-Uri"); uri != "" {
				u = schemeOf(r) + "://" + r.Host + uri
			}
		}
	case forwardAuth:
		host, uri := r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Uri")
		if host != "" {
			u = schemeOf(r) + "://" + host + uri
		}
	}
	parsed, err := url.Parse(u)
	if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
		return ""
	}
	return parsed.String()
}

func schemeOf(r *http.Request) string {
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		return p
	}
	return "https"
}
